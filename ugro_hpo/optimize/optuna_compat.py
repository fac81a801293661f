"""What we rely on in Optuna beyond its documented API, in one place.

- ``Study._get_trials(deepcopy=..., states=..., use_cache=...)``: how Optuna's GPSampler reads
  the study's trials. `FeasibilityAwareGP` gives the GP a view of the study in which a proposal
  that violated a constraint (stored PRUNED, without a value: it never ran) reads as COMPLETE
  with the worst value that ran. Optuna's GP models constraints only over COMPLETE trials;
  without the view it never sees a violation and keeps proposing the infeasible region (on a
  2-D space with a third of it infeasible, 85% of its second-half proposals were infeasible,
  against 5% with the view). The stored study is never changed.
- The storage object (`RDBStorage`, whose base class Optuna documents as not meant for its
  users), by trial id: Ray Tune, not ``study.optimize``, runs our trials, so the driver writes
  to a RUNNING trial that no `optuna.Trial` object holds any more (``set_trial_user_attr``,
  ``set_trial_intermediate_value``, ``set_trial_state_values`` to fail one interrupted,
  ``record_heartbeat`` because we renew heartbeats ourselves), and reads by id
  (``get_trial``, ``get_all_trials`` for a read that bypasses the study's cache,
  ``get_trial_id_from_study_id_trial_number``, ``get_study_id_from_name``). Its ``engine``
  attribute (SQLAlchemy's) lets us set SQLite's pragmas and close the connections.
- ``GridSampler._all_grids``, the grid's points in the order trials take them (trial ``n``
  takes point ``n`` while ``n`` is below the grid's size), shuffled by its seed, each point's
  values in the order of ``GridSampler._search_space``'s names:
  `grid_point_first` moves the defaults' point to the front. Queued with ``enqueue_trial``
  instead, that point would run twice, since the grid counts only trials it assigned.
- The warning text "Heartbeat of storage is supposed to be used with Study.optimize", which
  Optuna emits for a storage with heartbeats used outside ``study.optimize`` (our case, by
  design): `quiet_heartbeat_warning` filters exactly that message.

`tests/optimize/test_optuna_compat.py` fails (not skips) when Optuna moves the first;
`tests/optimize/test_samplers.py` runs a grid whose first trial must be the defaults; the
storage tests (tests/optimize/test_storage.py, test_searcher.py) exercise the rest.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Container
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ugro_hpo.optimize import protocol as p


class FeasibilityAwareGP(optuna.samplers.GPSampler):
    """Optuna's GPSampler, told of the proposals that violated a constraint (see above)."""

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return super().sample_relative(_InfeasibleAsWorst(study), trial, search_space)  # type: ignore[arg-type]


class _InfeasibleAsWorst:
    """A read view of a study: every attribute is the study's, but its trials list infeasible
    proposals as complete trials with the worst values that ran (none before any ran)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache)
        worst = _worst_values(trials, self._study.directions)
        seen: list[FrozenTrial] = []
        for trial in trials:
            if p.outcome_of(trial) == p.Outcome.INFEASIBLE and trial.state != TrialState.COMPLETE:
                if worst is None:
                    continue
                trial = copy.copy(trial)
                trial.state = TrialState.COMPLETE
                trial.values = worst
            if states is None or trial.state in states:
                seen.append(trial)
        return seen


def _worst_values(
    trials: list[FrozenTrial], directions: list[StudyDirection]
) -> list[float] | None:
    ran = [t.values for t in trials if t.state == TrialState.COMPLETE and t.values is not None
           and p.outcome_of(t) == p.Outcome.COMPLETE]  # fmt: skip
    if not ran:
        return None
    return [
        max(v[i] for v in ran) if d == StudyDirection.MINIMIZE else min(v[i] for v in ran)
        for i, d in enumerate(directions)
    ]


# -- the storage object, by trial id ----------------------------------------------------------


def grid_point_first(sampler: optuna.samplers.GridSampler, values: dict[str, Any]) -> None:
    """Put the first of the grid's points that has these values first (none: no change)."""
    names = sorted(sampler._search_space)  # a point's values are in its names' sorted order
    point = next((g for g in sampler._all_grids
                  if all(g[names.index(k)] == v for k, v in values.items())), None)  # fmt: skip
    if point is not None:
        sampler._all_grids.remove(point)
        sampler._all_grids.insert(0, point)


def quiet_heartbeat_warning() -> None:
    """We renew heartbeats ourselves (Optuna's own renewal lives in ``Study.optimize``)."""
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def engine(storage: optuna.storages.RDBStorage) -> Any:
    """The storage's SQLAlchemy engine."""
    return storage.engine


def record_heartbeat(storage: optuna.storages.RDBStorage, trial_id: int) -> None:
    storage.record_heartbeat(trial_id)


def set_user_attr(
    storage: optuna.storages.BaseStorage, trial_id: int, key: str, value: Any
) -> None:
    storage.set_trial_user_attr(trial_id, key, value)


def set_intermediate_value(
    storage: optuna.storages.BaseStorage, trial_id: int, step: int, value: float
) -> None:
    storage.set_trial_intermediate_value(trial_id, step, value)


def set_failed(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """Raises `optuna.exceptions.UpdateFinishedTrialError` when the trial has already ended."""
    storage.set_trial_state_values(trial_id, TrialState.FAIL)


def trial_by_id(storage: optuna.storages.BaseStorage, trial_id: int) -> FrozenTrial:
    return storage.get_trial(trial_id)


def all_trials(
    storage: optuna.storages.BaseStorage, study_id: int, states: Container[TrialState] | None
) -> list[FrozenTrial]:
    """Read from the database itself, not through the study's cache (not copied)."""
    return storage.get_all_trials(study_id, deepcopy=False, states=states)


def trial_id(storage: optuna.storages.BaseStorage, study_id: int, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def study_id(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    return storage.get_study_id_from_name(study_name)
