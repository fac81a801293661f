"""The steps at which an early-stopping scheduler decides (its rungs), from the plan's spec.

ASHA's and Hyperband's rungs are ``grace_period * reduction_factor**k`` below ``max_t``, then
``max_t``; FIFO and the median rule have none. They are stored with the study's facts as plain
text, so the rung view (`results.rung_view`) reads them back from any storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_RUNG_SCHEDULERS = ("ASHAScheduler", "AsyncHyperBandScheduler")
MAX_RUNGS = 64  # a bound on what a stored study's facts may list


def milestones(scheduler: Mapping[str, Any], max_steps: int) -> list[int]:
    """The steps at which the scheduler decides (empty for one without rungs: FIFO, median)."""
    if not str(scheduler.get("_target_", "")).endswith(_RUNG_SCHEDULERS):
        return []
    grace = int(scheduler.get("grace_period") or 1)
    factor = float(scheduler.get("reduction_factor") or 4)
    top = int(scheduler.get("max_t") or max_steps)
    if grace < 1 or factor <= 1 or top < 1:
        return []
    steps: list[int] = []
    k = 0
    while len(steps) < MAX_RUNGS:
        step = int(grace * factor**k)
        if step >= top:
            break
        steps.append(step)
        k += 1
    return [*steps, top]


def as_text(steps: list[int]) -> str:
    """The milestones as a study fact (plain text in the storage)."""
    return " ".join(str(s) for s in steps)


def from_text(text: Any) -> list[int]:
    """Milestones read back from a stored study's facts; anything else is no rungs."""
    if not isinstance(text, str):
        return []
    parts = text.split()[:MAX_RUNGS]
    if not all(part.isdigit() and len(part) < 10 for part in parts):
        return []
    steps = [int(part) for part in parts]
    return steps if steps == sorted(set(steps)) and all(s > 0 for s in steps) else []
