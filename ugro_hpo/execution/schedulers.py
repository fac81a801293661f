"""Ray Tune schedulers adjusted to trials that cannot be paused.

Our trials are functions without checkpoints: a paused trial would start again from its first
step. Ray's median stopping rule pauses a trial while too few others have reported ("yielding
time"); here it lets the trial continue instead, and still stops it when it falls behind.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule, TrialScheduler


class MedianStopping(MedianStoppingRule):
    """Median stopping rule that stops or continues, never pauses."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        return TrialScheduler.CONTINUE if action == TrialScheduler.PAUSE else action


def auto_scheduler(**settings: Any) -> ASHAScheduler:
    """What ``scheduler=auto`` builds for one objective: ASHA with these settings. For several
    objectives the plan has already put FIFO in its place (`config.scheduler_choice`)."""
    return ASHAScheduler(**settings)
