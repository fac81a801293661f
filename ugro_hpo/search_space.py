"""Search spaces in UGRO's YAML schema: loading, validation and define-by-run sampling.

A file (or a ``search_space`` group option) holds ``parameters``, optional ``constraints``,
``objectives`` and free-form ``metadata``. Everything is checked when it is loaded, so a bad
file fails before any trial starts, with one line naming the file, the parameter and the
problem. Sampling is define-by-run: a parameter whose condition is false is never suggested,
so the sampler never models a knob that had no effect.
"""

from __future__ import annotations

import json
import keyword
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ugro_hpo.errors import SearchSpaceError
from ugro_hpo.expressions import Expression, ExpressionError, compile_expression

if TYPE_CHECKING:
    import optuna

PARAMETER_TYPES = ("int", "float", "categorical")
DIRECTIONS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}
_TOP_LEVEL_KEYS = {"parameters", "constraints", "objectives", "metadata"}
_PARAMETER_KEYS = {
    "int": {"type", "min", "max", "step", "log", "default", "condition", "description"},
    "float": {"type", "min", "max", "step", "log", "default", "condition", "description"},
    "categorical": {"type", "choices", "default", "condition", "description"},
}
_OBJECTIVE_KEYS = {"name", "direction", "weight"}
_NO_DEFAULT = object()
_MAX_GRID_POINTS = 100_000
_MAX_BOUND = 1e300
INTERNAL_KEY = "__ugro__"
"""Key of the extras the define-by-run function adds to a trial's config (never a parameter)."""


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
class Objective:
    """A metric the study optimises."""

    name: str
    direction: str  # "minimize" | "maximize"
    weight: float = 1.0

    @property
    def mode(self) -> str:
        """Ray Tune's spelling of the direction."""
        return "min" if self.direction == "minimize" else "max"


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; ``sample`` is the define-by-run function Optuna calls."""

    source: str
    parameters: tuple[Parameter, ...]  # in sampling order: a condition's parameters come first
    objectives: tuple[Objective, ...]
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

    def __call__(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Define-by-run sampling for Ray Tune's OptunaSearch (see `sample`)."""
        return self.sample(trial)

    def sample(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest every active parameter and record constraint feasibility on the trial.

        Returns the extras to merge into the trial's config: the violated constraint, if any,
        so the trial can end without training.
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
        violations = outside + self.violations(values)
        for index, expression in enumerate(self.constraints):
            trial.set_constraint(f"c{index}", 1.0 if expression.source in violations else 0.0)
        return {INTERNAL_KEY: {"violation": "; ".join(violations) or None}}

    def violations(self, values: Mapping[str, Any]) -> list[str]:
        """Constraints that fail for these values; a constraint over an inactive parameter does
        not apply, and one that cannot be evaluated counts as violated."""
        failed = []
        for expression in self.constraints:
            if not expression.names <= values.keys():
                continue
            try:
                ok = expression.holds(values)
            except ExpressionError as exc:
                failed.append(f"{expression.source} ({exc})")
                continue
            if not ok:
                failed.append(expression.source)
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


# --------------------------------------------------------------------------- loading


def load_search_space(path: str | Path) -> SearchSpace:
    """Load and validate a search-space YAML file (UGRO's schema)."""
    import yaml

    from ugro_hpo.errors import UserError
    from ugro_hpo.security.limits import MAX_FILE_BYTES, load_yaml

    file = Path(path)
    label = str(path)
    if not file.is_file():
        raise SearchSpaceError(f"search space {label}: file not found")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SearchSpaceError(
            f"search space {label}: {size} bytes, more than the {MAX_FILE_BYTES} allowed"
        )
    try:
        data = load_yaml(file.read_text(encoding="utf-8"), f"search space {label}")
    except UserError as exc:
        raise SearchSpaceError(str(exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SearchSpaceError(
            f"search space {label}: invalid YAML{where}: {exc.problem}"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SearchSpaceError(f"search space {label}: invalid YAML: {exc}") from None
    return parse_search_space(data, source=label)


def parse_search_space(data: Any, source: str) -> SearchSpace:
    """Validate an already-parsed mapping (a file's content or a Hydra group option)."""

    from ugro_hpo.security.limits import TooLarge, check_data

    def fail(problem: str, parameter: str | None = None) -> SearchSpaceError:
        where = f"parameter {parameter!r}: " if parameter else ""
        return SearchSpaceError(f"search space {source}: {where}{problem}")

    try:
        check_data(data, f"search space {source}")
    except TooLarge as exc:
        raise SearchSpaceError(str(exc)) from None

    if not isinstance(data, Mapping):
        raise fail("must be a mapping with 'parameters' and 'objectives'")
    unknown = set(data) - _TOP_LEVEL_KEYS
    if unknown:
        raise fail(
            f"unknown top-level key(s) {sorted(map(str, unknown))}; allowed: {sorted(_TOP_LEVEL_KEYS)}"
        )
    raw_parameters = data.get("parameters")
    if not isinstance(raw_parameters, Mapping) or not raw_parameters:
        raise fail("'parameters' must be a non-empty mapping of name -> definition")

    names = [str(n) for n in raw_parameters]
    parameters = [
        _parse_parameter(str(name), spec, names, fail) for name, spec in raw_parameters.items()
    ]
    ordered = _order_by_conditions(parameters, fail)
    objectives = _parse_objectives(data.get("objectives"), fail)
    constraints = _parse_constraints(data.get("constraints"), names, fail)
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise fail("'metadata' must be a mapping")
    return SearchSpace(
        source=source,
        parameters=tuple(ordered),
        objectives=tuple(objectives),
        constraints=tuple(constraints),
        metadata=dict(metadata),
    )


def _parse_parameter(name: str, spec: Any, all_names: Sequence[str], fail: Any) -> Parameter:
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
        raise fail("names must be identifiers (letters, digits, '_'), usable in expressions", name)
    if not isinstance(spec, Mapping):
        raise fail("definition must be a mapping with at least 'type'", name)
    kind = spec.get("type")
    if kind not in PARAMETER_TYPES:
        raise fail(f"type must be one of {list(PARAMETER_TYPES)}, got {kind!r}", name)
    unknown = set(spec) - _PARAMETER_KEYS[kind]
    if unknown:
        raise fail(f"unknown key(s) {sorted(map(str, unknown))} for a {kind} parameter", name)

    condition = None
    if spec.get("condition") is not None:
        others = [n for n in all_names if n != name]
        try:
            condition = compile_expression(spec["condition"], others)
        except ExpressionError as exc:
            raise fail(f"condition {spec['condition']!r} {exc}", name) from None

    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
            raise fail("categorical parameters need a non-empty 'choices' list", name)
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise fail(
                    f"choices must be numbers, strings, booleans or null, got {choice!r}", name
                )
        if len({(type(c), c) for c in choices}) != len(choices):
            raise fail("'choices' has duplicates", name)
        parameter = Parameter(name, kind, choices=tuple(choices), condition=condition)
        if "default" in spec:
            if not any(type(c) is type(spec["default"]) and c == spec["default"] for c in choices):
                raise fail(f"default {spec['default']!r} is not one of the choices", name)
            parameter = _with_default(parameter, spec["default"])
        return parameter

    low, high = _bound(spec, "min", kind, name, fail), _bound(spec, "max", kind, name, fail)
    if low > high:
        raise fail(f"min ({low}) is greater than max ({high})", name)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"'log' must be true or false, got {log!r}", name)
    if log and low <= 0:
        raise fail(f"'log: true' needs min > 0, got min {low}", name)
    step = spec.get("step")
    if step is not None:
        step = _number(step, "step", kind, name, fail)
        if step <= 0:
            raise fail(f"'step' must be positive, got {step}", name)
        if log:
            raise fail("'step' and 'log: true' cannot be combined", name)
        span = (high - low) / step
        if abs(span - round(span)) > 1e-9 * max(1.0, abs(span)):
            raise fail(f"max ({high}) is not reachable from min ({low}) in steps of {step}", name)
    parameter = Parameter(name, kind, low=low, high=high, step=step, log=log, condition=condition)
    if "default" in spec:
        default = _number(spec["default"], "default", kind, name, fail)
        if not low <= default <= high:
            raise fail(f"default {default} is outside [{low}, {high}]", name)
        if step is not None:
            offset = (default - low) / step
            if abs(offset - round(offset)) > 1e-9 * max(1.0, abs(offset)):
                raise fail(f"default {default} is not on the grid min + k * step", name)
        parameter = _with_default(parameter, default)
    return parameter


def _with_default(parameter: Parameter, default: Any) -> Parameter:
    from dataclasses import replace

    return replace(parameter, default=default)


def _bound(spec: Mapping[str, Any], key: str, kind: str, name: str, fail: Any) -> int | float:
    if key not in spec:
        raise fail(f"{kind} parameters need '{key}'", name)
    return _number(spec[key], key, kind, name, fail)


def _number(value: Any, key: str, kind: str, name: str, fail: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(f"'{key}' must be a number, got {repr(value)[:60]}", name)
    if not abs(value) <= _MAX_BOUND:
        raise fail(f"'{key}' must be a finite number within ±{_MAX_BOUND:g}", name)
    if not math.isfinite(value):
        raise fail(f"'{key}' must be finite, got {value!r}", name)
    if kind == "int":
        if float(value) != int(value):
            raise fail(f"'{key}' of an int parameter must be a whole number, got {value!r}", name)
        return int(value)
    return float(value)


def _order_by_conditions(parameters: list[Parameter], fail: Any) -> list[Parameter]:
    """Declared order, except that a parameter comes after those its condition names."""
    by_name = {p.name: p for p in parameters}
    ordered: list[Parameter] = []
    state: dict[str, str] = {}

    def visit(parameter: Parameter, chain: list[str]) -> None:
        if state.get(parameter.name) == "done":
            return
        if state.get(parameter.name) == "visiting":
            cycle = " -> ".join([*chain, parameter.name])
            raise fail(f"conditions form a cycle ({cycle})", parameter.name)
        state[parameter.name] = "visiting"
        if parameter.condition is not None:
            for dependency in sorted(parameter.condition.names):
                visit(by_name[dependency], [*chain, parameter.name])
        state[parameter.name] = "done"
        ordered.append(parameter)

    for parameter in parameters:
        visit(parameter, [])
    return ordered


def _parse_objectives(raw: Any, fail: Any) -> list[Objective]:
    if raw is None:
        raise fail(
            "'objectives' is missing; e.g. objectives: [{name: eval_loss, direction: minimize}]"
        )
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise fail("'objectives' must be a non-empty list of {name, direction}")
    objectives = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise fail(f"each objective must be a mapping {{name, direction}}, got {entry!r}")
        unknown = set(entry) - _OBJECTIVE_KEYS
        if unknown:
            raise fail(f"objective has unknown key(s) {sorted(map(str, unknown))}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.replace("_", "").replace("/", "").isalnum():
            raise fail(f"objective name must be a metric name like 'eval_loss', got {name!r}")
        direction = DIRECTIONS.get(str(entry.get("direction", "minimize")).lower())
        if direction is None:
            raise fail(f"objective {name!r}: direction must be minimize or maximize")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise fail(f"objective {name!r}: weight must be a positive number")
        objectives.append(Objective(name=name, direction=direction, weight=float(weight)))
    if len({o.name for o in objectives}) != len(objectives):
        raise fail("objectives name the same metric twice")
    return objectives


def _parse_constraints(raw: Any, names: Sequence[str], fail: Any) -> list[Expression]:
    if raw is None:
        return []
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise fail("'constraints' must be a list of expressions")
    constraints = []
    for source in raw:
        try:
            constraints.append(compile_expression(source, names))
        except ExpressionError as exc:
            raise fail(f"constraint {source!r} {exc}") from None
    return constraints
