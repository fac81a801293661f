"""What we rely on in Optuna beyond its documented API, in one place.

- ``Study._get_trials(deepcopy=..., states=..., use_cache=...)``: how Optuna's GPSampler reads
  the study's trials. `FeasibilityAwareGP` gives the GP a view of the study in which a proposal
  that violated a constraint (stored PRUNED, without a value: it never ran) reads as COMPLETE
  with the worst value that ran. Optuna's GP models constraints only over COMPLETE trials;
  without the view it never sees a violation and keeps proposing the infeasible region (on a
  2-D space with a third of it infeasible, 85% of its second-half proposals were infeasible,
  against 5% with the view). The stored study is never changed.

`tests/optimize/test_optuna_compat.py` fails (not skips) when Optuna moves any of this.
"""

from __future__ import annotations

import copy
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
