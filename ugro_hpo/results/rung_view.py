"""Multi-fidelity a person can follow: the rungs of an early-stopping study, how many trials
reached each, were stopped there or went on, and the steps trained against what running every
trial to ``max_steps`` (FIFO) would have cost.

The rungs are the scheduler's milestones as the study's facts store them
(`optimize.rung_steps`); what each trial reached is its last reported step, read from the
storage, so the view is the same at the end of a run and from `ugro hpo analyze` later.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ugro_hpo.optimize import protocol as p
from ugro_hpo.results.records import TrialRecord


@dataclass(frozen=True)
class Rung:
    """One rung: trials that reached its step, were stopped between it and the next, went on."""

    step: int
    reached: int
    stopped: int
    promoted: int


def rung_view(records: list[TrialRecord], steps: list[int]) -> list[Rung]:
    """Per rung, among the trials that ran: reached it, stopped before the next, went on."""
    ran = [(r.state == p.Outcome.PRUNED, r.last_step) for r in records
           if r.state in p.RAN and r.last_step is not None]  # fmt: skip
    view = []
    for i, step in enumerate(steps):
        following = steps[i + 1] if i + 1 < len(steps) else math.inf
        reached = [(pruned, last) for pruned, last in ran if last >= step]
        view.append(Rung(
            step=step,
            reached=len(reached),
            stopped=sum(pruned and last < following for pruned, last in reached),
            promoted=sum(last >= following for _, last in reached),
        ))  # fmt: skip
    return view


def fidelity_summary(
    records: list[TrialRecord], steps: list[int], max_steps: int
) -> dict[str, Any]:
    """What summary.json says of the budget: steps trained, what FIFO would have trained, and
    the rungs (when the scheduler has them)."""
    ran = [r for r in records if r.state in p.RAN and r.last_step is not None]
    trained = sum(r.last_step or 0 for r in ran)
    data: dict[str, Any] = {"steps_trained": trained, "steps_fifo": len(ran) * max_steps}
    if steps:
        data["rungs"] = [asdict(rung) for rung in rung_view(records, steps)]
    return data
