"""Ray Tune's OptunaSearch, taught how our trials end.

Ray's searcher tells Optuna "complete" for any trial that returned a result, including ones a
scheduler stopped early, and has no notion of an infeasible trial or of why a trial failed.
Trials here finish with an explicit ``ugro_state`` in their last report, so each one is stored
as what it was: complete, pruned (stopped early), infeasible (a violated constraint, stored as
pruned with its violation so samplers learn the region) or failed (with its error).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ugro_hpo.search_space import INTERNAL_KEY, SearchSpace

STATE_KEY = "ugro_state"
ERROR_KEY = "ugro_error"
STEP_KEY = "step"


class StudySearcher(OptunaSearch):
    """OptunaSearch over a define-by-run `SearchSpace`, storing each trial's real outcome."""

    def __init__(
        self,
        space: SearchSpace,
        sampler: optuna.samplers.BaseSampler,
        storage: optuna.storages.BaseStorage,
        study_name: str,
        max_steps: int,
        on_finish: Callable[[str, optuna.trial.FrozenTrial], None] | None = None,
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
        self._on_finish = on_finish

    # -- suggestions -------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Searcher.FINISHED is a str
        exhausted = getattr(self._sampler, "is_exhausted", None)
        if exhausted is not None and trial_id not in self._ot_trials and exhausted(self._ot_study):
            return str(Searcher.FINISHED)
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        config.setdefault(INTERNAL_KEY, {})["number"] = ot_trial.number
        return config

    # -- results -----------------------------------------------------------------------------

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Intermediate values go to Optuna (single objective), keyed by our step count."""
        if STATE_KEY in result or self._is_multi() or trial_id in self._completed_trials:
            return
        value, step = result.get(self._metrics[0]), result.get(STEP_KEY)
        if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(step, int):
            self._ot_trials[trial_id].report(float(value), step)

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
            result = {**result, ERROR_KEY: "the trial's worker failed (see Ray's trial logs)"}

        values: list[float] | None = None
        if outcome == "complete":
            values = self._values(result)
            if values is None:
                outcome = "failed"
                result = {**result, ERROR_KEY: f"final result lacks finite {self._metrics}"}
            else:
                ot_trial.set_user_attr("metrics", reported_metrics(result))
        if outcome == "infeasible":
            ot_trial.set_user_attr("violation", str(result.get("ugro_violation", "")))
        elif outcome == "failed":
            ot_trial.set_user_attr("error", str(result.get(ERROR_KEY, "unknown error"))[:2000])
        elif outcome is None:
            outcome = "pruned"
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

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the searcher into its experiment directory (tuner.pkl); the storage URL
        may carry a password, and the Optuna storage is the study's record anyway."""
        return {}

    # -- helpers -----------------------------------------------------------------------------

    def _is_multi(self) -> bool:
        return isinstance(self._metric, list)

    def _values(self, result: dict[str, Any]) -> list[float] | None:
        values = [result.get(name) for name in self._metrics]
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return [float(v) for v in values]  # type: ignore[arg-type]
        return None


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
