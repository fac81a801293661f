"""Trials that Ray Tune ends without telling the searcher: stored as failed, never waited for.

With ``reuse_actors`` Tune hands a finished trial's worker to the next trial. It first waits
``TUNE_FUNCTION_THREAD_TIMEOUT_S`` (2 s by default) for the old trial's function to end; when
it takes longer (a stopped trial freeing a big model, a busy machine) the hand-over fails and
Ray 2.60 marks the new trial ERROR without calling its search algorithm. The study would then
wait forever: the searcher holds the trial as running and so has no budget to suggest another,
and Tune, with nothing running, waits for a suggestion.

Two defences: trial workers wait far longer for the old function
(`process_policy.HANDOVER_S`), and the search
algorithm Tune is given (`ray_compat.GuardedSearch`, which overrides a Tune method that is not
an extension point) reports any trial it made that Tune has marked ERROR
without a word as failed, before each request for a new trial. (A Tune callback could do the
same, but giving Tune any callback makes it import MLflow and W&B for its usage statistics:
about 2 s of every study's start.)
"""

from __future__ import annotations

from ugro_hpo.process_policy import HANDOVER_ENV, TRIAL_WORKER_ENV, set_defaults

LOST = (
    "Ray Tune ended this trial before it started: the worker it was given was still ending "
    f"the previous trial after {HANDOVER_ENV} seconds"
)


def allow_slow_handover() -> None:
    """In a trial's worker: let the next trial wait up to `process_policy.HANDOVER_S` for this one
    to end
        (a user's own setting wins). Tune reads the variable in the worker when it hands it over."""
    set_defaults(TRIAL_WORKER_ENV)
