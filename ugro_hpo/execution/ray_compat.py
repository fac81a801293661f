"""What we rely on in Ray beyond its documented API, in one place.

- ``SearchGenerator.create_trial_if_possible(experiment_spec)``, overridden by `GuardedSearch`:
  the method through which Tune's search algorithm for a `Searcher` makes each trial. It is not
  an extension point (Tune documents `Searcher` for custom search). We override it to remember
  every trial made, so that a trial Tune marks ERROR without calling its search algorithm (a
  failed worker hand-over with ``reuse_actors``, `lost_trials`) can be failed by us; otherwise the
  study waits forever. `GuardedSearch` also hooks ``next_trial`` and ``on_trial_complete``, the
  methods of Tune's `SearchAlgorithm` interface that Tune calls on it.
- The logger ``ray._private.authentication.authentication_token_setup``, a private module's: it
  warns at every local start about the local cluster's default token, which we do not use.
  `quiet_ray_loggers` sets it (and two public loggers) to ERROR; if Ray renames it, the warning
  comes back and nothing else changes.
- ``DataParallelTrainer._create_default_callbacks``, overridden by `group_trainer`: it adds
  Ray Train's ``PlacementGroupCleanerCallback``, a detached actor that removes a group's
  placement group once its controller is gone. It asks Ray's state API, which needs the
  dashboard; we start Ray without one (and a cluster may run without one), so after a
  scheduler's stop it polls for ever and the group's CPUs and GPUs stay reserved for the rest
  of the study. We leave it out and remove the group's placement group ourselves
  (`group_release`).
- Tune's layout of a run in its storage, ``<storage_path>/<name>/<trial folder>``
  (`experiment_folder`): a group's trial finds its own folder from it, since in a reused actor
  Tune's context names a session folder instead (`train_group.trial_folder`).

`tests/execution/test_group_release.py` checks that the callback is still made, under that name,
and left out of ours. `tests/execution/test_lost_trials.py` drives `GuardedSearch` with Tune's own Experiment, Trial and
ConcurrencyLimiter, so it fails when Ray changes the method it overrides.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from ray.tune.search import SearchGenerator

from ugro_hpo.execution.lost_trials import LOST
from ugro_hpo.optimize import protocol as p

log = logging.getLogger("ugro_hpo.execution.lost_trials")

QUIET_LOGGERS = (
    "ray.tune.analysis.experiment_analysis",  # result files we do not write
    "ray._private.authentication.authentication_token_setup",  # the local cluster's token
    "ray.tune.tune",
)


def quiet_ray_loggers() -> None:
    """Ray loggers that speak of things we handle ourselves: errors only."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class GuardedSearch(SearchGenerator):
    """Tune's own search algorithm for a `Searcher`, which also remembers the trials it made
    until Tune reports them ended, and fails those Tune dropped (see `lost_trials`)."""

    def __init__(self, searcher: Any) -> None:
        super().__init__(searcher)
        self.live: dict[str, Any] = {}  # trial id -> Tune's Trial

    def create_trial_if_possible(self, experiment_spec: dict[str, Any]) -> Any:
        trial = super().create_trial_if_possible(experiment_spec)
        if trial is not None:
            self.live[trial.trial_id] = trial
        return trial

    def next_trial(self) -> Any:
        self.fail_lost()
        return super().next_trial()

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.live.pop(trial_id, None)
        super().on_trial_complete(trial_id, result=result, error=error)

    def fail_lost(self) -> None:
        """Report every trial Tune marked ERROR but never reported as ended."""
        for trial_id, trial in list(self.live.items()):
            if trial.status == "ERROR":
                log.warning("trial %s failed: %s", trial_id, LOST)
                result = {p.RESULT_STATE: p.Outcome.FAILED.value, p.RESULT_ERROR: LOST}
                self.on_trial_complete(trial_id, result=result, error=True)


CLEANER = "PlacementGroupCleanerCallback"  # Ray Train's, left out of a group's trainer


@functools.cache
def group_trainer() -> type:
    """Ray Train's `TorchTrainer` without its placement group cleaner (see the module's
    docstring): `group_release` removes the group's placement group when its trial ends."""
    from ray.train.torch import TorchTrainer

    class GroupTrainer(TorchTrainer):
        def _create_default_callbacks(self) -> list[Any]:
            made = super()._create_default_callbacks()  # type: ignore[misc]  # Train V2's
            return [c for c in made if type(c).__name__ != CLEANER]

    return GroupTrainer


def experiment_folder(storage_path: str, name: str) -> str:
    """Where Tune keeps the run called ``name`` under ``storage_path`` (a folder or a bucket
    URI); the slow 2-worker study reads each trial's records from there."""
    return f"{storage_path.rstrip('/')}/{name}"
