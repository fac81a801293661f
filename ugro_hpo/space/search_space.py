"""A validated search space and its define-by-run sampling.

A space holds ``parameters``, optional ``constraints``, ``objectives`` (the goals) and
free-form ``metadata`` (`parsing` builds one from UGRO's YAML schema and checks everything).
Sampling is define-by-run: a parameter whose condition is false is never suggested, so the
sampler never models a knob that had no effect, and constraints are recorded on the Optuna
trial with ``set_constraint`` so samplers that model feasibility learn from them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ugro_hpo.errors import SearchSpaceError
from ugro_hpo.space.expressions import Expression, ExpressionError

if TYPE_CHECKING:
    import optuna

PARAMETER_TYPES = ("int", "float", "categorical")
_NO_DEFAULT = object()
_MAX_GRID_POINTS = 100_000


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter: its distribution, optional default and optional condition."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    default: Any = _NO_DEFAULT
    condition: Expression | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Ask the trial for a value (inclusive bounds)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices or ()))
        if self.type == "int":
            return trial.suggest_int(
                self.name,
                int(self.low or 0),
                int(self.high or 0),
                step=int(self.step or 1),
                log=self.log,
            )
        return trial.suggest_float(
            self.name, float(self.low or 0.0), float(self.high or 0.0), step=self.step, log=self.log
        )

    def contains(self, value: Any) -> bool:
        """Is ``value`` one this parameter can take (a value queued by another driver, or read
        back from a shared database, may not be)?"""
        if self.type == "categorical":
            return any(type(c) is type(value) and c == value for c in self.choices or ())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and value != int(value):
            return False
        return bool(self.low <= value <= self.high)  # type: ignore[operator]

    def grid_values(self) -> list[Any]:
        """Every value this parameter can take, for grid search."""
        if self.type == "categorical":
            return list(self.choices or ())
        if self.type == "float" and self.step is None:
            raise SearchSpaceError(
                f"grid search needs a finite set of values: give float parameter {self.name!r} a 'step'"
            )
        assert self.low is not None and self.high is not None
        step = self.step or 1
        count = round((self.high - self.low) / step) + 1
        if count > _MAX_GRID_POINTS:
            raise SearchSpaceError(
                f"grid search: parameter {self.name!r} has {count} values; too many"
            )
        if self.type == "int":
            return [int(self.low + i * step) for i in range(count)]
        return [round(self.low + i * step, 12) for i in range(count)]

    def describe(self) -> str:
        """A compact human description, e.g. ``int [4, 64] step 4``."""
        if self.type == "categorical":
            text = f"categorical {list(self.choices or ())}"
        else:
            text = f"{self.type} [{self.low}, {self.high}]"
            if self.step is not None:
                text += f" step {self.step}"
            if self.log:
                text += " log"
        if self.has_default:
            text += f" default {self.default!r}"
        if self.condition is not None:
            text += f" if {self.condition.source}"
        return text

    def spec(self) -> dict[str, Any]:
        """The normalised definition; equal specs sample the same space."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = list(self.choices or ())
        else:
            out.update(min=self.low, max=self.high, step=self.step, log=self.log)
        if self.condition is not None:
            out["condition"] = self.condition.source
        return out


@dataclass(frozen=True)
class Goal:
    """A metric the study optimises."""

    name: str
    direction: str  # "minimize" | "maximize"
    weight: float = 1.0

    @property
    def mode(self) -> str:
        """Ray Tune's spelling of the direction."""
        return "min" if self.direction == "minimize" else "max"


@dataclass(frozen=True)
class Proposal:
    """What sampling a trial gave: its parameters and why it must not run, if it must not."""

    params: dict[str, Any]
    violation: str | None = None  # constraints it violates: infeasible, and costs no training
    outside: str | None = None  # values outside the space: not run at all


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; ``sample`` is the define-by-run function Optuna calls."""

    source: str
    parameters: tuple[Parameter, ...]  # in sampling order: a condition's parameters come first
    objectives: tuple[Goal, ...]
    constraints: tuple[Expression, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def metric_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def is_conditional(self) -> bool:
        return any(p.condition is not None for p in self.parameters)

    def sample(self, trial: optuna.trial.BaseTrial) -> Proposal:
        """Suggest every active parameter and record each constraint on the trial (1 when
        violated, 0 when not or when it does not apply), so samplers can model feasibility.

        A value outside the space (Optuna hands back a value queued with ``enqueue_trial``, by
        another driver perhaps, even when it is out of range) is reported, not trained on.
        """
        values: dict[str, Any] = {}
        outside: list[str] = []
        for parameter in self.parameters:
            if self._is_active(parameter, values):
                try:
                    values[parameter.name] = parameter.suggest(trial)
                except ValueError as exc:  # a queued value Optuna cannot even represent
                    outside.append(f"parameter {parameter.name}: {str(exc)[:200]}")
                    continue
                if not parameter.contains(values[parameter.name]):
                    shown = repr(values[parameter.name])[:60]
                    outside.append(
                        f"parameter {parameter.name}={shown} is outside the search space"
                    )
        broken = self._broken(values)
        for index in range(len(self.constraints)):
            trial.set_constraint(f"c{index}", 1.0 if index in broken else 0.0)
        violation = "; ".join(broken.values()) or None
        return Proposal(values, violation, "; ".join(outside) or None)

    def violations(self, values: Mapping[str, Any]) -> list[str]:
        """Constraints that fail for these values; a constraint over an inactive parameter does
        not apply, and one that cannot be evaluated counts as violated."""
        return list(self._broken(values).values())

    def _broken(self, values: Mapping[str, Any]) -> dict[int, str]:
        failed = {}
        for index, expression in enumerate(self.constraints):
            if not expression.names <= values.keys():
                continue
            try:
                ok = expression.holds(values)
            except ExpressionError as exc:
                failed[index] = f"{expression.source} ({exc})"
                continue
            if not ok:
                failed[index] = expression.source
        return failed

    def defaults(self) -> dict[str, Any]:
        """The declared default values of the parameters active under those defaults."""
        values: dict[str, Any] = {}
        for parameter in self.parameters:
            if parameter.has_default and self._is_active(parameter, values, unknown_is_active=True):
                values[parameter.name] = parameter.default
        return values

    def active_names(self, values: Mapping[str, Any]) -> set[str]:
        """Names that would be sampled alongside these values (for checking a stored trial)."""
        active: dict[str, Any] = {}
        for parameter in self.parameters:
            if self._is_active(parameter, active) and parameter.name in values:
                active[parameter.name] = values[parameter.name]
        return set(active)

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's value list, for Optuna's GridSampler."""
        grid = {p.name: p.grid_values() for p in self.parameters}
        if math.prod(len(v) for v in grid.values()) > _MAX_GRID_POINTS:
            raise SearchSpaceError(
                f"grid search: {self.source} has more than {_MAX_GRID_POINTS} points"
            )
        return grid

    def spec(self) -> dict[str, Any]:
        """Normalised definition (parameters, constraints, objectives) for comparing studies."""
        return {
            "parameters": {p.name: p.spec() for p in sorted(self.parameters, key=lambda p: p.name)},
            "constraints": [c.source for c in self.constraints],
            "objectives": [{"name": o.name, "direction": o.direction} for o in self.objectives],
        }

    def fingerprint(self) -> str:
        """Canonical JSON of `spec`, stored with the study to refuse a silent mix on resume."""
        return json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def _is_active(
        parameter: Parameter, values: Mapping[str, Any], unknown_is_active: bool = False
    ) -> bool:
        condition = parameter.condition
        if condition is None:
            return True
        if not condition.names <= values.keys():
            return unknown_is_active
        try:
            return condition.holds(values)
        except ExpressionError:
            return False
