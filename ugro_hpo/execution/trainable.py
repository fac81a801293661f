"""The function Ray Tune runs for each trial.

It builds the objective (once per worker process, so actors reused across trials keep their
caches), runs it as `train-best` does (`trial_runner`: every reported metric checked), turns an
exception or a non-finite metric into a failed trial with its reason, and always frees memory
before the worker takes the next trial.

Everything a trial says is hostile text (see README, Security): its output (Python's streams
and the process's file descriptors 1 and 2), the message of whatever it raises (any
BaseException: ``sys.exit("...")`` and KeyboardInterrupt too) and its metric names are
scrubbed of the driver's secrets here, in the trial's own process, before Ray sees them.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import traceback
from typing import Any

from ray import tune

from ugro_hpo.components import instantiate
from ugro_hpo.execution.checkpoints import (
    report_checkpoint,
    restore_checkpoint,
    restore_ray_retry,
)
from ugro_hpo.execution.lost_trials import allow_slow_handover
from ugro_hpo.execution.trial_runner import Reporter, TrialTimeout, run_objective
from ugro_hpo.objectives.base import Objective, TrialContext
from ugro_hpo.optimize import protocol as p
from ugro_hpo.process_policy import collect_and_freeze_once
from ugro_hpo.security.digests import SecretDigests, scrub_then_cut
from ugro_hpo.security.streams import RedactingStream

log = logging.getLogger("ugro_hpo.trial")
_objectives: dict[str, Objective] = {}
# A failed trial's error text comes back into the driver, the study database and the trackers:
# there is a limit to how long it may be.
MAX_ERROR = 2000
MAX_LOGGED = 100_000  # characters of a failed trial's traceback in its log


def run_trial(config: dict[str, Any], spec: dict[str, Any]) -> None:
    """Ray Tune function trainable; ``spec`` holds the study-level settings (see launcher)."""
    allow_slow_handover()
    digests: SecretDigests = spec["secret_digests"]
    _scrub_output(digests)
    extras = config.get(p.CONFIG_EXTRAS) or {}
    params = {k: v for k, v in config.items() if k != p.CONFIG_EXTRAS}
    metrics = tuple(spec["metrics"])
    # Ray's retry after a dead worker continues from the trial's own last checkpoint, which is
    # newer than any the driver handed its first run.
    resumed_from, resumed_step = restore_ray_retry(int(spec["max_steps"]))
    if resumed_from is None:
        resumed_from, resumed_step = restore_checkpoint(extras.get("resume"))
    context = TrialContext(
        number=int(extras.get("number", -1)),
        seed=int(spec["seed"]),
        max_steps=int(spec["max_steps"]),
        eval_every=int(spec["eval_every"]),
        metrics=metrics,
        resources=spec.get("resources", {}),
        run_dir=str(spec.get("run_dir", ".")),
        metadata=spec.get("metadata", {}),
        checkpoint=resumed_from,
        resumed_from_step=resumed_step,
        **{key: spec[key] for key in ("workers", "strategy") if key in spec},
    )
    if context.workers > 1:  # a data-parallel group of processes (Ray Train) runs this trial
        from ugro_hpo.execution.train_group import TrialSteps, run_group

        run_group(params, context, spec, TrialSteps(_objective, _scrub_output, release_memory,
                                                    _describe, MAX_ERROR))  # fmt: skip
        return
    names_checked = functools.lru_cache(maxsize=1024)(digests.scrub)  # a name is checked once
    reporter = Reporter(metrics, tune.report, spec.get("trial_timeout_s"), names_checked,
                        checkpoint_sink=report_checkpoint)  # fmt: skip
    reporter.checkpoint, reporter.resumed_from_step = resumed_from, resumed_step
    try:
        final = run_objective(
            _objective(spec["objective"]), params, context, reporter, names_checked
        )
    except TrialTimeout as timeout:
        tune.report({p.RESULT_STATE: p.Outcome.PRUNED.value, p.RESULT_REASON: str(timeout),
                     p.STEP: reporter.last_step})  # fmt: skip
        return
    except BaseException as exc:  # the objective's failure is this trial's, not the study's
        if reporter.stopping:  # Ray's own stop, on its way out: nothing of the trial's text
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                raise
            raise SystemExit(0) from None
        # The error text is the objective's (or a library's), whatever it raised: scrub every
        # secret the driver knows of before it is logged or reported (and so stored by Ray
        # and the study); Ray never sees the exception itself.
        logged = scrub_then_cut(digests.scrub, traceback.format_exc(), MAX_LOGGED)
        log.error("trial %s failed:\n%s", context.number, logged)
        error = scrub_then_cut(digests.scrub, _describe(exc), MAX_ERROR)
        tune.report({p.RESULT_STATE: p.Outcome.FAILED.value, p.RESULT_ERROR: error,
                     p.STEP: reporter.last_step})  # fmt: skip
        return
    finally:
        # A trial the scheduler stops leaves through SystemExit from tune.report; that
        # exception's traceback still holds the objective's frames (model, optimizer), so
        # they are cleared first, or the memory would stay held until the next trial ends.
        _clear_frames(sys.exc_info()[1])
        release_memory()
    tune.report(
        {**final, p.STEP: max(reporter.last_step, 1), p.RESULT_STATE: p.Outcome.COMPLETE.value}
    )


def _describe(exc: BaseException) -> str:
    """``Type: message``, even for an exception whose message cannot be made."""
    try:
        message = str(exc)
    except Exception:
        message = "(its message could not be shown)"
    if isinstance(exc, SystemExit) and not message:
        message = f"exit code {exc.code!r}"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _scrub_output(digests: SecretDigests) -> None:
    """What the objective prints goes to Ray's worker logs (and, with verbose, the driver's
    console): scrub the driver's secrets from it. Once per worker process and study: in a
    Ray worker, at the file descriptors (`security.descriptors`), which also catches what a
    C library or a subprocess writes; where that cannot be done, at Python's streams."""
    from ugro_hpo.security.descriptors import scrub_descriptors

    if _in_ray_worker() and scrub_descriptors(digests):
        for name in ("stdout", "stderr"):  # a stream left from an earlier study would scrub twice
            stream = getattr(sys, name)
            if isinstance(stream, RedactingStream):
                stream.flush()
                setattr(sys, name, stream.target)
        return
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, RedactingStream):
            if stream.redact == digests.scrub:
                continue
            stream = stream.target
        setattr(sys, name, RedactingStream(stream, digests.scrub))


def _in_ray_worker() -> bool:
    """Is this a Ray worker's process (a trial runs in an actor), not a driver or a test?"""
    import ray

    try:
        return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # no runtime context: not a worker
        return False


def _objective(spec: dict[str, Any] | Objective) -> Objective:
    """One objective per worker process and spec: a reused actor keeps its caches. An
    objective the study was given as an object arrives built."""
    if isinstance(spec, Objective):
        return spec
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _objectives:
        _objectives[key] = instantiate(spec, "objective")
    return _objectives[key]


def _clear_frames(exc: BaseException | None) -> None:
    """Drop the locals of the finished frames an exception in flight still refers to."""
    if exc is not None and exc.__traceback__ is not None:
        traceback.clear_frames(exc.__traceback__)


def release_memory() -> None:
    """Free what the trial left behind, on the GPU too, before the next trial reuses the actor.

    After the first trial, what survives (imported modules, the objective's caches) is frozen
    out of the collector's sight (`process_policy.collect_and_freeze_once`).
    """
    collect_and_freeze_once()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
