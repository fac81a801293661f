"""Reading search spaces in UGRO's YAML schema: every check happens here, when a file (or a
``search_space`` group option, or a stored study's space) is loaded, so a bad space fails
before anything runs, with one line naming the source, the parameter and the problem.

Files come from other people (see README, Security): they are read by a bounded safe loader,
and their expressions by the whitelisting evaluator in `expressions`.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ugro_hpo.errors import SearchSpaceError
from ugro_hpo.space.expressions import Expression, ExpressionError, compile_expression
from ugro_hpo.space.search_space import (
    PARAMETER_TYPES,
    Goal,
    Parameter,
    SearchSpace,
)
from ugro_hpo.validation import direction, is_metric_name

NO_PARAMETERS = "no_parameters"
"""Metadata flag of a space with no parameters (every trial runs the same configuration)."""
_TOP_LEVEL_KEYS = {"parameters", "constraints", "objectives", "metadata"}
_PARAMETER_KEYS = {
    "int": {"type", "min", "max", "step", "log", "default", "condition", "description"},
    "float": {"type", "min", "max", "step", "log", "default", "condition", "description"},
    "categorical": {"type", "choices", "default", "condition", "description"},
}
_OBJECTIVE_KEYS = {"name", "direction", "weight"}
_MAX_BOUND = 1e300


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
    # A Hydra sweep without parameters runs its jobs as they are; it says so in its metadata.
    repeats = (
        isinstance(data.get("metadata"), Mapping) and data["metadata"].get(NO_PARAMETERS) is True
    )
    if not isinstance(raw_parameters, Mapping) or (not raw_parameters and not repeats):
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
    if not _valid_name(name):
        raise fail(
            "names must be identifiers (letters, digits, '_'), usable in expressions, or a Hydra "
            "config key made of them (model.lr, optimizer/lr)",
            name,
        )
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


def _valid_name(name: str) -> bool:
    """An identifier, or a Hydra config key of identifiers joined by '.' or '/' (a sweeper's
    parameter; it cannot appear in an expression, which names identifiers only)."""
    parts = re.split(r"[./]", name)
    return all(
        p.isidentifier() and not keyword.iskeyword(p) and not p.startswith("__") for p in parts
    )


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


def _parse_objectives(raw: Any, fail: Any) -> list[Goal]:
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
        if not is_metric_name(name):
            raise fail(f"objective name must be a metric name like 'eval_loss', got {name!r}")
        goal = direction(entry.get("direction", "minimize"))
        if goal is None:
            raise fail(f"objective {name!r}: direction must be minimize or maximize")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise fail(f"objective {name!r}: weight must be a positive number")
        objectives.append(Goal(name=name, direction=goal, weight=float(weight)))
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
