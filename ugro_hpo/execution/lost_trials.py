"""Trials that Ray Tune ends without telling the searcher: stored as failed, never waited for.

With ``reuse_actors`` Tune hands a finished trial's worker to the next trial. It first waits
``TUNE_FUNCTION_THREAD_TIMEOUT_S`` (2 s by default) for the old trial's function to end; when
it takes longer (a stopped trial freeing a big model, a busy machine) the hand-over fails and
Ray 2.60 marks the new trial ERROR without calling the searcher. The study would then wait
forever: the searcher holds the trial as running and so has no budget to suggest another, and
Tune, with nothing running, waits for a suggestion.

Two defences: trial workers wait far longer for the old function (`HANDOVER_S`), and a Tune
callback reports any trial Tune has marked ERROR while the searcher still holds it as failed,
through the same path Tune uses (the concurrency limiter, then the searcher).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

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


class LostTrialGuard(Callback):
    """After every step of Tune's loop: a trial Tune marked ERROR that the searcher still holds
    as running is reported to ``search_alg`` as failed."""

    def __init__(self, search_alg: Any, running: Callable[[], list[str]]) -> None:
        self.search_alg = search_alg
        self.running = running

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        held = set(self.running())
        if not held:
            return
        for trial in trials:
            if trial.trial_id in held and trial.status == "ERROR":
                log.warning("trial %s failed: %s", trial.trial_id, LOST)
                result = {p.RESULT_STATE: p.Outcome.FAILED.value, p.RESULT_ERROR: LOST}
                self.search_alg.on_trial_complete(trial.trial_id, result=result, error=True)
