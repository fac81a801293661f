"""Ray Tune's OptunaSearch, taught how our trials end.

Ray's searcher tells Optuna "complete" for any trial that returned a result, including ones a
scheduler stopped early, and has no notion of an infeasible trial or of why a trial failed.
Trials here finish with an explicit ``ugro_state`` in their last report, so each one is stored
as what it was: complete, pruned (stopped early), infeasible (a violated constraint, stored as
pruned with its violation so samplers learn the region) or failed (with its error).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ugro_hpo.run_control import NotPersisted
from ugro_hpo.search_space import INTERNAL_KEY, SearchSpace
from ugro_hpo.security.redaction import redact_text
from ugro_hpo.storage import (
    DRIVER_ATTR,
    FINISHED_STATES,
    driver_id,
    fail_interrupted,
    recover_orphans,
)

STATE_KEY = "ugro_state"
ERROR_KEY = "ugro_error"
STEP_KEY = "step"
ORPHAN_CHECK_S = 5.0
MAX_TEXT = 2000


class StudySearcher(NotPersisted, OptunaSearch):
    """OptunaSearch over a define-by-run `SearchSpace`, storing each trial's real outcome."""

    def __init__(
        self,
        space: SearchSpace,
        sampler: optuna.samplers.BaseSampler,
        storage: optuna.storages.BaseStorage,
        study_name: str,
        max_steps: int,
        n_trials: int,
        on_finish: Callable[[str, optuna.trial.FrozenTrial], None] | None = None,
        trial_logs: str = "Ray's experiment directory",
        halted: Callable[[], bool] = lambda: False,
    ) -> None:
        metrics = space.metric_names
        modes = [o.mode for o in space.objectives]
        multi = space.is_multi_objective
        super().__init__(
            space=space,
            metric=metrics if multi else metrics[0],
            mode=modes if multi else modes[0],
            sampler=sampler,
            storage=storage,
            study_name=study_name,
        )
        self._metrics = metrics
        self._max_steps = max_steps
        self._n_trials = n_trials
        self._on_finish = on_finish
        self._driver = driver_id()
        self._orphan_check = 0.0
        self._trial_logs = trial_logs
        self._halted = halted

    # -- suggestions -------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Searcher.FINISHED is a str
        """Ask Optuna for the next trial while the study still needs one.

        The budget is the study's, shared by every driver working on it: stop when n_trials have
        finished, wait while enough are running (one may still fail and need replacing).
        """
        if self._halted():
            return str(Searcher.FINISHED)  # the study is being stopped: no new trials
        finished, running = self._counts()
        if finished >= self._n_trials:
            return str(Searcher.FINISHED)
        if finished + running >= self._n_trials:
            self._recover_orphans()  # a trial that nobody runs must not block the study
            return None
        exhausted = getattr(self._sampler, "is_exhausted", None)
        if exhausted is not None and exhausted(self._ot_study):
            return str(Searcher.FINISHED)
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        if sum(self._counts()) > self._n_trials:
            self._stand_down(trial_id)  # another driver asked at the same moment
            return None
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        ot_trial.set_user_attr(DRIVER_ATTR, self._driver)
        # Alive from the start, so another driver never takes it for stale; the periodic
        # heartbeat() renews it.
        assert self._ot_study is not None
        self._ot_study._storage.record_heartbeat(ot_trial._trial_id)
        config.setdefault(INTERNAL_KEY, {})["number"] = ot_trial.number
        return config

    def _recover_orphans(self) -> None:
        now = time.monotonic()
        if now - self._orphan_check >= ORPHAN_CHECK_S:
            self._orphan_check = now
            assert self._ot_study is not None
            recover_orphans(self._ot_study)

    def _counts(self) -> tuple[int, int]:
        assert self._ot_study is not None
        # One read of the storage (each read costs a query); the cached trials are not copied.
        trials = self._ot_study._storage.get_all_trials(self._ot_study._study_id, deepcopy=False)
        finished = sum(t.state in FINISHED_STATES for t in trials)
        return finished, sum(t.state == TrialState.RUNNING for t in trials)

    def _stand_down(self, trial_id: str) -> None:
        ot_trial = self._ot_trials.pop(trial_id)
        ot_trial.set_user_attr(
            "error", "not run: the study's n_trials were already running or finished"
        )
        assert self._ot_study is not None
        self._ot_study.tell(ot_trial, state=TrialState.FAIL)

    def running_trials(self) -> list[str]:
        """Ray trial ids asked from Optuna and not finished yet (safe from another thread)."""
        return [t for t in self._ot_trials.copy() if t not in self._completed_trials]

    def heartbeat(self) -> None:
        """Tell the storage our running trials are alive; fail other drivers' stale ones."""
        assert self._ot_study is not None
        storage = self._ot_study._storage
        for trial_id, ot_trial in self._ot_trials.copy().items():
            if trial_id not in self._completed_trials:
                storage.record_heartbeat(ot_trial._trial_id)
        optuna.storages.fail_stale_trials(self._ot_study)

    def abandon(self, reason: str) -> None:
        """The study is stopping: fail the trials still running (their points are queued again)."""
        assert self._ot_study is not None
        for trial_id in self.running_trials():
            self._completed_trials.add(trial_id)
            ot_trial = self._ot_trials[trial_id]
            fail_interrupted(self._ot_study, ot_trial._trial_id, reason)
            if self._on_finish is not None:
                self._on_finish(trial_id, self._ot_study._storage.get_trial(ot_trial._trial_id))

    # -- results -----------------------------------------------------------------------------

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Intermediate values go to Optuna (single objective), keyed by our step count."""
        if STATE_KEY in result or trial_id in self._completed_trials:
            return
        self._report(self._ot_trials[trial_id], result)

    def _report(self, ot_trial: Any, result: dict[str, Any]) -> None:
        if self._is_multi():
            return
        value, step = result.get(self._metrics[0]), result.get(STEP_KEY)
        if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(step, int):
            ot_trial.report(float(value), step)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._completed_trials.add(trial_id)
        ot_trial = self._ot_trials[trial_id]
        result = result or {}
        outcome = result.get(STATE_KEY)
        if outcome is None and not error and result.get(STEP_KEY, 0) >= self._max_steps:
            outcome = "complete"  # a scheduler stopped it exactly at its last step
        if error and outcome is None:
            outcome = "failed"
            where = f"{self._trial_logs}/trial_{trial_id}/error.txt"
            result = {
                **result,
                ERROR_KEY: f"the trial's worker process failed; Ray's report: {where}",
            }

        values: list[float] | None = None
        if outcome == "complete":
            values = self._values(result)
            if values is None:
                outcome = "failed"
                result = {**result, ERROR_KEY: f"final result lacks finite {self._metrics}"}
            else:
                ot_trial.set_user_attr("metrics", reported_metrics(result))
        # Text that comes back from a trial is scrubbed again here, with every secret the
        # driver knows of, before the study database (and, from it, every file) keeps it.
        if outcome == "infeasible":
            ot_trial.set_user_attr("violation", _text(result.get("ugro_violation", "")))
        elif outcome == "pruned":
            ot_trial.set_user_attr("reason", _text(result.get("ugro_reason", "")))
        elif outcome == "failed":
            ot_trial.set_user_attr("error", _text(result.get(ERROR_KEY, "unknown error")))
        elif outcome is None:
            # A scheduler stopped it on this result, which Ray then gives only to us here.
            outcome = "pruned"
            self._report(ot_trial, result)
            if any(m in result for m in self._metrics):
                ot_trial.set_user_attr("metrics", reported_metrics(result))
        if STEP_KEY in result:
            ot_trial.set_user_attr("last_step", int(result[STEP_KEY]))
        ot_trial.set_user_attr("state", outcome)

        state = {"complete": TrialState.COMPLETE, "failed": TrialState.FAIL}.get(
            outcome, TrialState.PRUNED
        )
        assert self._ot_study is not None
        frozen = self._ot_study.tell(
            ot_trial, values if state == TrialState.COMPLETE else None, state=state
        )
        if self._on_finish is not None:
            self._on_finish(trial_id, frozen)

    def save_to_dir(self, *args: Any, **kwargs: Any) -> None:
        """The Optuna storage is the study's checkpoint; Ray's pickled copy is not needed."""

    # -- helpers -----------------------------------------------------------------------------

    def _is_multi(self) -> bool:
        return isinstance(self._metric, list)

    def _values(self, result: dict[str, Any]) -> list[float] | None:
        values = [result.get(name) for name in self._metrics]
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return [float(v) for v in values]  # type: ignore[arg-type]
        return None


def _text(value: Any) -> str:
    return redact_text(str(value)[:MAX_TEXT])[:MAX_TEXT]


def reported_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics a trial reported last (not Ray's bookkeeping)."""
    skip = {"step", "training_iteration", "timestamp", "time_this_iter_s", "time_total_s",
            "time_since_restore", "iterations_since_restore", "pid", "done"}  # fmt: skip
    return {
        k: float(v)
        for k, v in result.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k not in skip
        and not k.startswith(("ugro_", "config/"))
    }
