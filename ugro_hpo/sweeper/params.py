"""Hydra's sweep syntax (the Optuna sweeper's ``params``) as a UGRO search space.

``choice(a, b)`` is a categorical parameter; ``range(a, b, step=s)`` an int (or float) parameter
on that grid, end excluded as in Python; ``interval(a, b)`` a float (Hydra reads an interval's
bounds as floats); ``tag(log, interval(a, b))`` the same on a log scale. A value that is not a sweep
is passed to every job unchanged. Each parameter remembers the override key it came from
(``+db``, ``model.lr``), so a trial's values become that job's command-line overrides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ugro_hpo.errors import ConfigError

OBJECTIVE = "objective"
"""The metric name of a task function's return value when ``metric`` is not set."""


@dataclass
class SweepSpace:
    """The parameters (UGRO's schema), their override keys, and overrides that do not vary."""

    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # parameter -> override key (+db, x)
    fixed: list[str] = field(default_factory=list)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """One job's overrides: the fixed ones, then the trial's values."""
        from hydra.core.override_parser.types import Transformer

        chosen = [f"{self.keys.get(name, name)}={Transformer.str(value)}"
                  for name, value in params.items()]  # fmt: skip
        # (a parameter from custom_search_space is its own override key)
        return [*self.fixed, *chosen]


def parse_params(
    params: Mapping[str, Any] | None,
    arguments: Sequence[str],
    config_loader: Any = None,
    require: bool = True,
) -> SweepSpace:
    """``params`` (key: sweep expression) and the command line's overrides, which win."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    parser = OverridesParser.create(config_loader=config_loader)
    space = SweepSpace()
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
    if require and not space.parameters:
        raise ConfigError(
            "hydra.sweeper.params: nothing to search; give at least one sweep, e.g. "
            "hydra.sweeper.params.lr='tag(log, interval(1e-4, 1e-1))', or search_space_file"
        )
    return space


def _same_key(line: str, key: str) -> bool:
    return line.split("=", 1)[0] == key


def _parameter(override: Any, line: str) -> dict[str, Any]:
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
    from hydra.errors import HydraException

    value = override.value()
    if override.is_choice_sweep():
        try:  # glob(...) lists a config group's options
            choices = list(override.sweep_iterator(transformer=Transformer.encode))
        except HydraException as exc:
            raise ConfigError(f"hydra.sweeper.params: {line!r}: {exc}") from None
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"hydra.sweeper.params: {line!r} has the same choice twice")
        return {"type": "categorical", "choices": choices}
    if override.is_range_sweep() and isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"hydra.sweeper.params: {line!r} is an empty range")
        low, high = min(values), max(values)
        whole = all(isinstance(v, int) for v in values)
        step = abs(value.step or 1)
        if len(values) == 1:
            return {"type": "categorical", "choices": values}
        return {"type": "int" if whole else "float", "min": low, "max": high, "step": step}
    if override.is_interval_sweep() and isinstance(value, IntervalSweep):
        return {"type": "float", "min": value.start, "max": value.end,
                "log": "log" in value.tags}  # fmt: skip
    raise ConfigError(
        f"hydra.sweeper.params: {line!r} is not a sweep this sweeper understands; use "
        "choice(...), range(a, b, step=s), interval(a, b) or tag(log, interval(a, b))"
    )


def objectives(direction: Any, metric: Any) -> list[dict[str, str]]:
    """One objective per direction, named by ``metric`` (a name or a list of names)."""
    directions = [direction] if isinstance(direction, str) else list(direction or ["minimize"])
    if not directions or not all(d in ("minimize", "maximize") for d in map(str, directions)):
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
