"""Analytic test functions with known optima: the machinery at work in seconds.

Each trial "trains" for ``max_steps`` steps; at every evaluation it reports the function value
plus a term that shrinks as steps pass (``1/step - 1/max_steps``), so a curve looks like a
learning curve, schedulers can compare trials mid-way, and the final value is the function's
exact value. ``sleep_s`` simulates the cost of a step; ``fail_prob`` and ``nan_prob`` inject
faults, seeded by the study seed and trial number so a rerun fails the same trials.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.objectives.base import Objective, ReportFn, TrialContext
from ugro_hpo.space import SearchSpace

_MAX_DIMENSIONS = 32


def branin(x: Sequence[float]) -> tuple[float, ...]:
    """Branin-Hoo on x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887 (three places)."""
    x1, x2 = x
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    value = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10
    return (value,)


_H6_ALPHA = (1.0, 1.2, 3.0, 3.2)
_H6_A = (
    (10, 3, 17, 3.5, 1.7, 8),
    (0.05, 10, 17, 0.1, 8, 14),
    (3, 3.5, 1.7, 10, 17, 8),
    (17, 8, 0.05, 10, 0.1, 14),
)
_H6_P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)


def hartmann6(x: Sequence[float]) -> tuple[float, ...]:
    """Hartmann 6-D on [0, 1]^6; minimum -3.32237."""
    total = 0.0
    for alpha, a_row, p_row in zip(_H6_ALPHA, _H6_A, _H6_P, strict=True):
        inner = sum(a * (xi - p) ** 2 for a, xi, p in zip(a_row, x, p_row, strict=True))
        total += alpha * math.exp(-inner)
    return (-total,)


def rosenbrock(x: Sequence[float]) -> tuple[float, ...]:
    """Rosenbrock in n dimensions; minimum 0 at (1, ..., 1)."""
    return (sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1)),)


def quadratic(x: Sequence[float]) -> tuple[float, ...]:
    """A bowl: sum of (xi - 0.5)^2; minimum 0 at (0.5, ..., 0.5)."""
    return (sum((xi - 0.5) ** 2 for xi in x),)


def binh_korn(x: Sequence[float]) -> tuple[float, ...]:
    """Binh and Korn's two-objective problem on x in [0, 5], y in [0, 3] (a Pareto front)."""
    a, b = x
    return (4 * a**2 + 4 * b**2, (a - 5) ** 2 + (b - 5) ** 2)


@dataclass(frozen=True)
class _Function:
    fn: Callable[[Sequence[float]], tuple[float, ...]]
    dimensions: int | None  # None: any number from 2 up
    n_metrics: int
    optimum: float | None


FUNCTIONS: dict[str, _Function] = {
    "branin": _Function(branin, 2, 1, 0.397887),
    "hartmann6": _Function(hartmann6, 6, 1, -3.32237),
    "rosenbrock": _Function(rosenbrock, None, 1, 0.0),
    "quadratic": _Function(quadratic, None, 1, 0.0),
    "binh_korn": _Function(binh_korn, 2, 2, None),
}


class InjectedFault(RuntimeError):
    """A failure the synthetic objective raised on purpose (fail_prob)."""


class SyntheticObjective(Objective):
    """Evaluates an analytic function of parameters x1, x2, ... (see FUNCTIONS).

    The function is ``function``, or else the one the search space names in its
    ``metadata.function`` (every bundled synthetic space does).
    """

    def __init__(
        self,
        function: str | None = None,
        sleep_s: float = 0.0,
        fail_prob: float = 0.0,
        nan_prob: float = 0.0,
    ) -> None:
        if function is not None and function not in FUNCTIONS:
            raise ConfigError(
                f"objective.function: unknown {function!r}; choose one of {sorted(FUNCTIONS)}"
            )
        for key, value in (("fail_prob", fail_prob), ("nan_prob", nan_prob)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"objective.{key}: must be between 0 and 1, got {value}")
        if sleep_s < 0:
            raise ConfigError(f"objective.sleep_s: must be >= 0, got {sleep_s}")
        self.function = function
        self.sleep_s = float(sleep_s)
        self.fail_prob = float(fail_prob)
        self.nan_prob = float(nan_prob)
        self.name = f"synthetic({function or 'from the search space'})"
        self.resolved = function

    def resolve(self, metadata: Mapping[str, Any]) -> str:
        """The function to evaluate: the configured one, else the search space's."""
        intended = metadata.get("function")
        if self.function and intended and intended != self.function:
            raise ConfigError(
                f"the search space is for synthetic function {intended!r}, but "
                f"objective.function={self.function}; set objective.function={intended}"
            )
        name = self.function or intended
        if name not in FUNCTIONS:
            raise ConfigError(
                f"objective.function: choose one of {sorted(FUNCTIONS)} (or name it in the search space's metadata.function)"
            )
        return str(name)

    def describe(self) -> dict[str, str]:
        return {"objective": "synthetic", "function": self.resolved or "(search space)"}

    def check(self, space: SearchSpace) -> None:
        name = self.resolved = self.resolve(space.metadata)
        spec = FUNCTIONS[name]
        self.name = f"synthetic({name})"
        self.parameters = frozenset(
            f"x{i}" for i in range(1, (spec.dimensions or _MAX_DIMENSIONS) + 1)
        )
        super().check(space)
        parameter_names, metric_names, source = space.names, space.metric_names, space.source
        needed = spec.dimensions or max(2, len(parameter_names))
        expected = [f"x{i}" for i in range(1, needed + 1)]
        if sorted(parameter_names) != sorted(expected):
            raise ConfigError(
                f"search space {source}: objective {self.name!r} needs parameters {expected}, "
                f"got {parameter_names} (use search_space={name})"
            )
        if len(metric_names) != spec.n_metrics:
            raise ConfigError(
                f"search space {source}: objective {self.name!r} gives {spec.n_metrics} "
                f"metric(s) but the search space has {len(metric_names)} objective(s)"
            )

    def __call__(
        self, params: dict[str, Any], report: ReportFn, context: TrialContext
    ) -> dict[str, float]:
        spec = FUNCTIONS[self.resolve(context.metadata)]
        point = [float(params[f"x{i}"]) for i in range(1, len(params) + 1)]
        values = spec.fn(point)
        rng = random.Random(f"{context.seed}:{context.number}")
        fail_at = rng.randint(1, context.max_steps) if rng.random() < self.fail_prob else None
        nan_at = rng.randint(1, context.max_steps) if rng.random() < self.nan_prob else None
        evaluations = set(context.evaluation_steps())
        final: dict[str, float] = {}
        for step in range(1, context.max_steps + 1):
            if self.sleep_s:
                time.sleep(self.sleep_s)
            if step == fail_at:
                raise InjectedFault(f"injected failure at step {step} (objective.fail_prob)")
            if step not in evaluations and step != nan_at:
                continue
            decay = 1.0 / step - 1.0 / context.max_steps
            final = {
                name: (math.nan if step == nan_at else value + decay)
                for name, value in zip(context.metrics, values, strict=True)
            }
            report(step, **final)
        return final
