"""Hydra's sweep syntax (the Optuna sweeper's ``params``) as a UGRO search space.

As the Optuna sweeper reads it (its 1.4 line):

- ``choice(a, b)``: a categorical parameter;
- ``range(a, b, step=s)``: an int parameter on that grid when all three are whole numbers, a
  float one otherwise; the end is excluded, as everywhere in Hydra's grammar (the 1.3 line
  included it). A range whose values a float grid cannot hold exactly, or one that is shuffled
  or cast (``int(range(0, 5, 1.5))``), is categorical over its values;
- ``interval(a, b)``: a float parameter (Hydra reads an interval's bounds as floats), an int
  one when cast (``int(interval(-5, 5))``); ``tag(log, ...)`` puts either on a log scale,
  other tags are labels only.

A value that is not a sweep (``y=0``, ``~z``) is passed to every job unchanged. Each parameter
remembers the override key it came from (``+db``, ``model.lr``), so a trial's values become
that job's command-line overrides and the results name it as it was given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.validation import GOALS

OBJECTIVE = "objective"
"""The metric name of a task function's return value when ``metric`` is not set."""
MAX_RANGE_CHOICES = 10_000
"""The most values a range may enumerate when it cannot be a numeric parameter."""


@dataclass
class SweepSpace:
    """The parameters (UGRO's schema), their override keys, and overrides that do not vary."""

    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # parameter -> override key (+db, x)
    fixed: list[str] = field(default_factory=list)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """One job's overrides: the fixed ones, then the trial's values."""
        from hydra.core.override_parser.types import Transformer

        chosen = [f"{self.key(name)}={Transformer.str(value)}" for name, value in params.items()]
        return [*self.fixed, *chosen]

    def key(self, name: str) -> str:
        """The override key of a parameter (one from custom_search_space is its own key)."""
        return self.keys.get(name, name)

    def as_given(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters named by their override keys (``+db``), as the Optuna sweeper names them."""
        return {self.key(str(name)): value for name, value in params.items()}


def parse_params(
    params: Mapping[str, Any] | None,
    arguments: Sequence[str],
    config_loader: Any = None,
    search_space: Mapping[str, Any] | None = None,
) -> SweepSpace:
    """``params`` (key: sweep expression) and the command line's overrides, which win;
    ``search_space`` is the deprecated form of ``params`` (used only without it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    space = SweepSpace()
    if search_space and params is None:
        for name, spec in search_space.items():
            space.parameters[str(name)] = _deprecated_distribution(str(name), spec)
            space.keys[str(name)] = str(name)
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    parser = OverridesParser.create(config_loader=config_loader)
    for line in [*lines, *arguments]:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"hydra.sweeper.params: cannot parse {line!r} ({first})") from None
        name = override.key_or_group + (f"@{override.package}" if override.package else "")
        space.parameters.pop(name, None)
        space.keys.pop(name, None)
        space.fixed = [f for f in space.fixed if not _same_key(f, override.get_key_element())]
        if not override.is_sweep_override():
            space.fixed.append(str(override.input_line))
            continue
        space.parameters[name] = _parameter(override, line)
        space.keys[name] = override.get_key_element()
    return space


def _same_key(line: str, key: str) -> bool:
    return line.split("=", 1)[0] == key


def _parameter(override: Any, line: str) -> dict[str, Any]:
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    value = override.value()
    if override.is_choice_sweep():
        return _categorical(_values(override, line), line)
    if override.is_range_sweep() and isinstance(value, RangeSweep):
        return _range(override, value, line)
    if override.is_interval_sweep() and isinstance(value, IntervalSweep):
        start, end = value.start, value.end
        whole = isinstance(start, int) and isinstance(end, int)
        if start is None or end is None or start >= end:
            raise ConfigError(f"hydra.sweeper.params: {line!r}: the interval's start must be "
                              "below its end")  # fmt: skip
        return {"type": "int" if whole else "float", "min": value.start, "max": value.end,
                "log": "log" in value.tags}  # fmt: skip
    raise ConfigError(
        f"hydra.sweeper.params: {line!r} is not a sweep this sweeper understands; use "
        "choice(...), range(a, b, step=s), interval(a, b) or tag(log, interval(a, b))"
    )


def _values(override: Any, line: str) -> list[Any]:
    from hydra.core.override_parser.types import Transformer
    from hydra.errors import HydraException

    try:  # glob(...) lists a config group's options
        return list(override.sweep_iterator(transformer=Transformer.encode))
    except HydraException as exc:
        raise ConfigError(f"hydra.sweeper.params: {line!r}: {exc}") from None


def _categorical(choices: list[Any], line: str) -> dict[str, Any]:
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"hydra.sweeper.params: {line!r} has the same choice twice")
    return {"type": "categorical", "choices": choices}


def _range(override: Any, value: Any, line: str) -> dict[str, Any]:
    """A range as the Optuna sweeper's 1.4 line makes it: a numeric parameter when its grid is
    exact, its values otherwise; counted, never enumerated, when numeric."""
    if value.step == 0:
        raise ConfigError(f"hydra.sweeper.params: {line!r}: a range needs a step other than 0")
    start, stop, step = (Fraction(Decimal(str(v))) for v in (value.start, value.stop, value.step))
    count = math.ceil((stop - start) / step)
    if count <= 0:
        raise ConfigError(f"hydra.sweeper.params: {line!r} is an empty range")
    if value.shuffle or getattr(value, "transformers", ()):
        return _categorical(_enumerated(override, line, count), line)
    last = start + (count - 1) * step
    low, high = min(start, last), max(start, last)
    if count == 1:
        return {"type": "categorical", "choices": _enumerated(override, line, count)}
    whole = all(isinstance(v, int) for v in (value.start, value.stop, value.step))
    if whole:
        return {"type": "int", "min": int(low), "max": int(high), "step": int(abs(step))}
    bounds = [float(low), float(high), float(abs(step))]
    exact = all(
        Fraction(Decimal(repr(b))) == f for b, f in zip(bounds, (low, high, abs(step)), strict=True)
    )
    if not exact or bounds[2] < max(math.ulp(bounds[0]), math.ulp(bounds[1])):
        return _categorical(_enumerated(override, line, count), line)
    return {"type": "float", "min": bounds[0], "max": bounds[1], "step": bounds[2]}


def _enumerated(override: Any, line: str, count: int) -> list[Any]:
    if count > MAX_RANGE_CHOICES:
        raise ConfigError(
            f"hydra.sweeper.params: {line!r} has {count} values and cannot be a numeric "
            f"parameter; at most {MAX_RANGE_CHOICES} values can be choices"
        )
    return _values(override, line)


_DEPRECATED_KEYS = {"type", "choices", "low", "high", "log", "step"}


def _deprecated_distribution(name: str, spec: Any) -> dict[str, Any]:
    """An entry of the deprecated ``search_space`` (``{type, low, high, step, log, choices}``)."""
    where = f"hydra.sweeper.search_space.{name}"
    if not isinstance(spec, Mapping) or spec.get("type") not in ("int", "float", "categorical"):
        raise ConfigError(f"{where}: give type: int, float or categorical")
    unknown = sorted(set(map(str, spec)) - _DEPRECATED_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_DEPRECATED_KEYS)}")
    if spec["type"] == "categorical":
        return {"type": "categorical", "choices": list(spec.get("choices") or [])}
    if spec.get("low") is None or spec.get("high") is None:
        raise ConfigError(f"{where}: a {spec['type']} distribution needs low and high")
    kind = str(spec["type"])
    cast = int if kind == "int" else float
    out: dict[str, Any] = {"type": kind, "min": cast(spec["low"]), "max": cast(spec["high"])}
    if spec.get("log"):
        out["log"] = True
    elif spec.get("step") is not None:
        out["step"] = cast(spec["step"])
    return out


def objectives(direction: Any, metric: Any) -> list[dict[str, str]]:
    """One objective per direction, named by ``metric`` (a name or a list of names)."""
    directions = [direction] if isinstance(direction, str) else list(direction or ["minimize"])
    if not directions or not all(d in GOALS for d in map(str, directions)):
        raise ConfigError(
            f"hydra.sweeper.direction: {direction!r}; use minimize, maximize, or a list of them"
        )
    if metric is None:
        names = (
            [OBJECTIVE]
            if len(directions) == 1
            else [f"{OBJECTIVE}_{i}" for i in range(len(directions))]
        )
    else:
        names = [metric] if isinstance(metric, str) else [str(m) for m in metric]
    if len(names) != len(directions):
        raise ConfigError(
            f"hydra.sweeper.metric: {len(names)} name(s) for {len(directions)} direction(s); "
            "give one name per direction"
        )
    return [{"name": n, "direction": str(d)} for n, d in zip(names, directions, strict=True)]
