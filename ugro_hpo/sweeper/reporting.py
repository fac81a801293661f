"""``ugro_hpo.report(step, **metrics)``: intermediate metrics from inside any task function.

Inside a trial of a ugro_hpo sweep the call reaches Ray Tune, so a scheduler (ASHA, Hyperband,
median) can stop a poor trial early: the trial's job then ends at that call (the exception that
stops it passes through the app like any other). Anywhere else it does nothing, so an app runs
unchanged on its own. Importing it imports nothing heavy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

_active: Callable[..., None] | None = None


def report(step: int, **metrics: Any) -> None:
    """Report ``metrics`` at ``step`` (whole numbers from 1 that increase, e.g. epoch + 1)."""
    if _active is not None:
        _active(step, **metrics)


@contextlib.contextmanager
def reporting_to(report_fn: Callable[..., None]) -> Iterator[None]:
    """Send `report` calls to ``report_fn`` while a trial's job runs (one trial per worker)."""
    global _active
    previous, _active = _active, report_fn
    try:
        yield
    finally:
        _active = previous
