"""Tell the study when Ray runs a trial again after its worker died (``max_failures``).

Ray's retry goes on from the trial's last checkpoint (`checkpoints.restore_ray_retry`); this
callback, in the driver, has the study record that step on the trial (``resumed_from_step`` in
`trials.csv` and `summary.json`) before the retry reports anything.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback


class RetryRecord(Callback):
    """Hands each of Ray's trial retries to the searcher (`StudySearcher.retrying`)."""

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.searcher.retrying(trial.trial_id)
