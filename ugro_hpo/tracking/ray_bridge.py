"""Ray Tune's callback events, turned into tracker events.

Trials start and report through Ray; how a trial ended (complete, pruned, infeasible, failed)
is known once the searcher has stored it in Optuna, so that event comes from the searcher.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from ugro_hpo.results import trial_state
from ugro_hpo.run_control import NotPersisted
from ugro_hpo.search_space import INTERNAL_KEY
from ugro_hpo.searcher import STATE_KEY, STEP_KEY, reported_metrics
from ugro_hpo.tracking.base import Trackers, TrialEnd, TrialStart


class TrackingCallback(NotPersisted, Callback):
    """Feeds trial starts and intermediate results to the trackers."""

    def __init__(self, trackers: Trackers) -> None:
        self.trackers = trackers

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        internal = trial.config.get(INTERNAL_KEY) or {}
        params = {k: v for k, v in trial.config.items() if k != INTERNAL_KEY}
        self.trackers.trial_started(
            TrialStart(
                trial_id=trial.trial_id, number=int(internal.get("number", -1)), params=params
            )
        )

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if STATE_KEY in result or not isinstance(result.get(STEP_KEY), int):
            return  # the final report: its outcome arrives through `trial_finished`
        self.trackers.trial_result(trial.trial_id, result[STEP_KEY], reported_metrics(result))

    def trial_finished(self, trial_id: str, frozen: Any) -> None:
        """Hooked to the searcher: the trial's outcome as stored in Optuna."""
        attrs = frozen.user_attrs
        self.trackers.trial_finished(
            TrialEnd(
                trial_id=trial_id,
                number=frozen.number,
                state=trial_state(frozen),
                metrics=dict(attrs.get("metrics") or {}),
                violation=attrs.get("violation") or None,
                error=attrs.get("error"),
                last_step=attrs.get("last_step"),
            )
        )
