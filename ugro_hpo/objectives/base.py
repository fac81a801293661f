"""The contract between a trial and the code it runs.

An objective is called as ``objective(params, report, context)``: ``params`` is a plain dict of
the trial's hyperparameters, ``report(step, **metrics)`` sends intermediate metrics to Ray Tune
(so schedulers can stop the trial early), and the return value is the dict of final metrics.
Constructing an objective must stay cheap and import nothing heavy: the driver builds one only
to check that the search space's parameters and metrics are ones it understands.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ugro_hpo.errors import ConfigError

if TYPE_CHECKING:
    from ugro_hpo.space import SearchSpace


class ReportFn(Protocol):
    def __call__(self, step: int, **metrics: float) -> None: ...


@dataclass(frozen=True)
class TrialContext:
    """Study-level facts a trial needs besides its parameters."""

    number: int
    seed: int
    max_steps: int
    eval_every: int
    metrics: tuple[str, ...]
    resources: Mapping[str, float] = field(default_factory=dict)
    run_dir: str = "."
    metadata: Mapping[str, Any] = field(default_factory=dict)  # the search space's metadata
    checkpoint: str | None = None  # a local folder an interrupted run of these params saved
    resumed_from_step: int = 0  # the step that checkpoint was reported at (0: a fresh start)
    workers: int = 1  # processes training this trial together (resources.workers)
    strategy: str = "ddp"  # how they train together (resources.strategy)

    def evaluation_steps(self) -> list[int]:
        """Steps at which to evaluate and report: every eval_every steps, and the last one."""
        steps = list(range(self.eval_every, self.max_steps + 1, self.eval_every))
        if not steps or steps[-1] != self.max_steps:
            steps.append(self.max_steps)
        return steps


class Objective(ABC):
    """Base class: declares the parameters and metrics an objective understands.

    ``None`` means "anything" (a user's own function cannot be inspected).
    """

    name: str = "objective"
    parameters: frozenset[str] | None = None
    metrics: frozenset[str] | None = None
    reports_every_metric: bool = True
    """Does each intermediate report carry every objective's metric? (A Hydra app may report
    only some, or none, and return them all at the end.)"""
    uses_gpu: bool = False
    """Does it train on a GPU when given one? ``resources.gpu: auto`` gives a GPU only then."""
    gpu_only: str | None = None
    """Why it cannot run without a GPU at all (a 4-bit model), or None."""
    gpu_memory_gib: float | None = None
    """GPU memory its weights alone need (a warning when a trial's share is smaller), or None."""
    runs_in_groups: bool = False
    """Can a trial run as a group of several processes (``resources.workers`` above 1)?"""
    listeners: tuple[Any, ...] = ()
    """Its own listeners of the trial events in the driver (`ugro_hpo.trial_events`)."""

    def check(self, space: SearchSpace) -> None:
        """Refuse a search space that names a knob or metric this objective does not have."""
        for names, known, what in (
            (space.names, self.parameters, "does not understand parameter(s) {}; it accepts {}"),
            (space.metric_names, self.metrics, "does not report metric(s) {}; it reports {}"),
        ):
            unknown = [n for n in names if known is not None and n not in known]
            if unknown:
                detail = what.format(unknown, sorted(known or ()))
                raise ConfigError(f"search space {space.source}: objective {self.name!r} {detail}")

    def describe(self) -> dict[str, str]:
        """What trackers record about this objective (model and dataset, function, ...)."""
        return {"objective": self.name}

    def prepare(self, resources: Mapping[str, float]) -> None:
        """Driver-side set-up before any trial (build caches, check that a model exists)."""
        return None

    def trials_over(self) -> None:
        """Driver-side, once Ray Tune's run has ended and before Ray is released (the Hydra
        sweeper waits here for the last lines of its trials' output)."""
        return None

    @abstractmethod
    def __call__(
        self, params: dict[str, Any], report: ReportFn, context: TrialContext
    ) -> dict[str, float]:
        """Run one trial; report intermediate metrics; return the final ones."""
