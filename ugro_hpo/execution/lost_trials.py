"""Trials that Ray Tune ends without telling the searcher: stored as failed, never waited for.

With ``reuse_actors`` Tune hands a finished trial's worker to the next trial. It first waits
``TUNE_FUNCTION_THREAD_TIMEOUT_S`` (2 s by default) for the old trial's function to end; when
it takes longer (a stopped trial freeing a big model, a busy machine) the hand-over fails and
Ray 2.60 marks the new trial ERROR without calling its search algorithm. The study would then
wait forever: the searcher holds the trial as running and so has no budget to suggest another,
and Tune, with nothing running, waits for a suggestion.

Two defences: trial workers wait far longer for the old function (`HANDOVER_S`), and the search
algorithm Tune is given (`GuardedSearch`) reports any trial it made that Tune has marked ERROR
without a word as failed, before each request for a new trial. (A Tune callback could do the
same, but giving Tune any callback makes it import MLflow and W&B for its usage statistics:
about 2 s of every study's start.)
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray.tune.search import SearchGenerator

from ugro_hpo.optimize import protocol as p

log = logging.getLogger(__name__)

HANDOVER_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"  # documented in Ray Tune's environment variables
HANDOVER_S = 120
LOST = (
    "Ray Tune ended this trial before it started: the worker it was given was still ending "
    f"the previous trial after {HANDOVER_ENV} seconds"
)


def allow_slow_handover() -> None:
    """In a trial's worker: let the next trial wait up to `HANDOVER_S` for this one to end
    (a user's own setting wins). Tune reads the variable in the worker when it hands it over."""
    os.environ.setdefault(HANDOVER_ENV, str(HANDOVER_S))


class GuardedSearch(SearchGenerator):
    """Tune's own search algorithm for a `Searcher`, which also remembers the trials it made
    until Tune reports them ended, and fails those Tune dropped."""

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
