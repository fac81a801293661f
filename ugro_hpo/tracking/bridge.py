"""The searcher's trial events, turned into tracker events.

The searcher hears of every trial Ray Tune runs: when it is asked for it, each result, and how
it ended once stored in Optuna (see `optimize.searcher.TrialEvents`). An infeasible proposal
never becomes a Ray trial, but trackers still get a run for it, opened and closed at once,
carrying the violated constraint, so the tracking UI shows where the sampler went. A proposal
with values outside the space (queued by another driver) is only in the study.
"""

from __future__ import annotations

from typing import Any

from ugro_hpo.optimize import protocol as p
from ugro_hpo.tracking.hub import Trackers
from ugro_hpo.tracking.tracker import TrialEnd, TrialStart


class TrackingBridge:
    """Feeds trial starts, intermediate results and endings to the trackers."""

    def __init__(self, trackers: Trackers) -> None:
        self.trackers = trackers

    def trial_started(self, trial_id: str, number: int, params: dict[str, Any]) -> None:
        self.trackers.trial_started(TrialStart(trial_id=trial_id, number=number, params=params))

    def trial_result(self, trial_id: str, step: int, metrics: dict[str, float]) -> None:
        self.trackers.trial_result(trial_id, step, metrics)

    def trial_finished(self, trial_id: str, frozen: Any) -> None:
        attrs = frozen.user_attrs
        outcome = p.outcome_of(frozen)
        if outcome == p.Outcome.INFEASIBLE and trial_id.startswith("infeasible-"):
            self.trial_started(trial_id, frozen.number, dict(frozen.params))
        self.trackers.trial_finished(
            TrialEnd(
                trial_id=trial_id,
                number=frozen.number,
                state=str(outcome),
                metrics=dict(attrs.get(p.TRIAL_METRICS) or {}),
                violation=attrs.get(p.TRIAL_VIOLATION) or None,
                error=attrs.get(p.TRIAL_ERROR),
                last_step=attrs.get(p.TRIAL_LAST_STEP),
            )
        )
