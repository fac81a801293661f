"""What the driver hears of each trial, in one vocabulary for everyone who listens.

The searcher sees every trial Ray Tune runs: when it is asked for it, each step's result, and
how it ended once stored in the study (or a proposal that never became a Ray trial). It tells
the hub (`tracking.hub.Trackers`), which tells every listener: progress, the failure streak, an
objective's own guard, and the trackers (MLflow, W&B). The events are plain frozen data, so a
listener never reads the study storage to learn what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class TrialEvent:
    """Something that happened to one trial: Ray Tune's id for it and its number in the study.
    A proposal that never ran has an id of its own (``infeasible-3``, ``not-run-3``)."""

    trial_id: str
    number: int


@dataclass(frozen=True)
class TrialStart(TrialEvent):
    """The trial was asked for and is about to run with these parameters."""

    params: dict[str, Any]


@dataclass(frozen=True)
class TrialResult(TrialEvent):
    """The trial reported its metrics at a step (each step once)."""

    step: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class TrialEnd(TrialEvent):
    """The trial is stored in its final state (``complete``, ``pruned``, ``infeasible`` or
    ``failed``), with what the study keeps of it."""

    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    violation: str | None = None
    error: str | None = None
    last_step: int | None = None
    values: tuple[float, ...] = ()  # the objectives' final values, for a complete trial
    params: dict[str, Any] = field(default_factory=dict)
    rung: int | None = None  # the highest rung of the scheduler it reached (None: no rungs)


class TrialListener(Protocol):
    """Who hears of trials. What ``trial_started`` returns is the listener's own (a tracker
    returns the id of the run it opened, for cross-references); the hub ignores the rest."""

    def trial_started(self, start: TrialStart) -> object: ...

    def trial_result(self, result: TrialResult) -> None: ...

    def trial_finished(self, end: TrialEnd) -> None: ...
