"""Running an objective once, as a study's trials and `train-best` both do.

An objective is called with its parameters, a `Reporter` for each step's metrics and its
`TrialContext`; every metric it reports or returns is checked here (numbers only, finite,
names the study and the trackers can keep, the objectives' metrics present), so what a trial
reports and what `train-best` writes follow the same rules. Where the metrics go (Ray Tune's
session, a log) and what a failure becomes (a failed trial, a one-line error) is the caller's.
Nothing here imports Ray, so the command line runs an objective without it.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ugro_hpo.objectives.base import Objective, TrialContext
from ugro_hpo.optimize import protocol as p
from ugro_hpo.validation import is_metric_name, is_number

# What a trial reports comes back into the driver, the study database and the trackers: metric
# names follow `validation.METRIC_NAME`, and there is a limit to how many there may be.
MAX_METRICS = 100


class TrialFailed(RuntimeError):
    """A trial reported something unusable (NaN, a missing metric, a step going backwards)."""


class TrialTimeout(BaseException):
    """trial_timeout_s has passed. A BaseException, so an objective's `except Exception` cannot
    swallow it."""


class Reporter:
    """The ``report(step, **metrics)`` handed to objectives: each step's metrics, checked, go to
    ``sink`` (Ray Tune's session in a trial, the log in `train-best`). A sink that raises
    SystemExit is Ray's stop: ``stopping`` says so."""

    def __init__(
        self,
        metrics: tuple[str, ...],
        sink: Callable[[dict[str, Any]], None],
        timeout_s: float | None = None,
        scrub: Callable[[str], str] | None = None,
        checkpoint_sink: Callable[[dict[str, Any], str], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.checkpoint_sink = checkpoint_sink  # where ``report(step, checkpoint=dir)`` goes
        self.checkpoint: str | None = None  # what a resumed trial continues from (see README)
        self.resumed_from_step = 0
        self.sink = sink
        self.last_step = 0
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self.scrub = scrub
        self.stopping = False  # Ray's session said stop (tune.report raised SystemExit)

    def __call__(self, step: int, *, checkpoint: Any = None, **metrics: Any) -> None:
        if (
            isinstance(step, bool)
            or not isinstance(step, numbers.Integral)
            or step <= self.last_step
        ):
            raise TrialFailed(f"report(step={step!r}): steps must be whole numbers that increase")
        clean = checked_metrics(metrics, self.metrics, f"at step {step}", self.scrub)
        self.last_step = int(step)
        if checkpoint is not None and not Path(checkpoint).is_dir():
            raise TrialFailed(f"report(step={step}, checkpoint=...): not a folder")
        try:
            if checkpoint is not None and self.checkpoint_sink is not None:
                self.checkpoint_sink({**clean, p.STEP: int(step)}, str(checkpoint))
            else:
                self.sink({**clean, p.STEP: int(step)})
        except SystemExit:
            self.stopping = True  # the scheduler stopped the trial: not the objective's doing
            raise
        if self.timeout_s is not None and time.monotonic() - self.started > self.timeout_s:
            raise TrialTimeout(f"trial_timeout_s={self.timeout_s:g} reached at step {step}")


def checked_metrics(
    metrics: dict[str, Any],
    required: tuple[str, ...],
    where: str,
    scrub: Callable[[str], str] | None = None,
) -> dict[str, float]:
    """Numbers only, all finite, the objective's metrics present; with ``scrub``, a name that
    holds a secret is refused (a name goes to the study, the trackers and Ray as it is)."""
    clean: dict[str, float] = {}
    if len(metrics) > MAX_METRICS:
        raise TrialFailed(f"{len(metrics)} metrics {where}; at most {MAX_METRICS} are allowed")
    for name, value in metrics.items():
        if isinstance(name, str) and (name in p.RESULT_KEYS or name.startswith("ugro_")):
            raise TrialFailed(f"metric name {name!r} {where} is reserved; call it something else")
        if not is_metric_name(name):
            raise TrialFailed(
                f"metric name {str(name)[:60]!r} {where} is not allowed; use up to 250 letters, "
                "digits, '_', '-', '.', '/' or spaces"
            )
        if scrub is not None and scrub(name) != name:
            raise TrialFailed(
                f"a metric name {where} holds a secret (or a value assigned to a secret-looking "
                "name); it is not reported"
            )
        if not is_number(value):
            raise TrialFailed(f"metric {name!r} {where} is not a number: {repr(value)[:100]}")
        if not math.isfinite(float(value)):
            raise TrialFailed(f"metric {name!r} is {float(value)} {where}")
        clean[name] = float(value)
    missing = [m for m in required if m not in clean]
    if missing:
        raise TrialFailed(f"metrics {missing} missing {where}")
    return clean


def run_objective(
    objective: Objective,
    params: dict[str, Any],
    context: TrialContext,
    reporter: Reporter,
    scrub: Callable[[str], str] | None = None,
) -> dict[str, float]:
    """Run ``objective`` once and return its final metrics, checked (TrialFailed if they are
    unusable). An objective whose reports need not carry every objective's metric (a Hydra app
    may report some, or none) must still return them all."""
    if not objective.reports_every_metric:
        reporter.metrics = ()
    returned = objective(params, reporter, context) or {}
    return checked_metrics(dict(returned), context.metrics, "in the final result", scrub)
