"""A stored trial's parameters are data from a shared database: before `export-best` writes
them to a file that is meant to be passed back to training, or `train-best` trains with them,
they are checked against the study's search space. Every name must be a parameter of the
space, present exactly when its condition holds; every value of the parameter's type, within
its bounds and on its step grid, or one of its choices; the constraints must hold. Anything
else is refused with one line, and nothing is written or trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.space.expressions import ExpressionError
from ugro_hpo.space.search_space import SearchSpace

_GRID_TOLERANCE = 1e-9


class StoredParamsRefused(ConfigError):
    """A stored trial's parameters are not ones its search space can produce."""


def check_stored_params(
    params: Mapping[str, Any], space: SearchSpace, trial: int
) -> dict[str, Any]:
    """``params`` as a plain dict, or StoredParamsRefused naming the first problem."""

    def refuse(problem: str) -> StoredParamsRefused:
        return StoredParamsRefused(
            f"stored trial {trial}: {problem}; the study database may have been altered, so "
            "nothing is written or trained"
        )

    known = {p.name for p in space.parameters}
    extra = sorted(str(name)[:60] for name in params if name not in known)
    if extra:
        shown = ", ".join(repr(name) for name in extra[:3])
        raise refuse(f"has parameter(s) {shown} that the search space does not define")
    for parameter in space.parameters:  # in the order conditions need
        condition = parameter.condition
        present = parameter.name in params
        wanted = True
        if condition is not None:
            try:
                wanted = condition.names <= set(params) and condition.holds(params)
            except ExpressionError as exc:
                raise refuse(f"{parameter.name}'s condition cannot be evaluated ({exc})") from None
        if present and not wanted:
            assert condition is not None
            raise refuse(
                f"has parameter {parameter.name!r}, although its condition "
                f"{condition.source!r} does not hold"
            )
        if wanted and not present:
            raise refuse(f"lacks parameter {parameter.name!r}")
        if present and not _valid(parameter, params[parameter.name]):
            shown = repr(params[parameter.name])[:60]
            raise refuse(
                f"{parameter.name} = {shown} is outside its search space ({parameter.describe()})"
            )
    for constraint in space.constraints:
        try:
            holds = constraint.holds(params)
        except ExpressionError as exc:
            raise refuse(
                f"the constraint {constraint.source!r} cannot be evaluated ({exc})"
            ) from None
        if not holds:
            raise refuse(f"violates the constraint {constraint.source!r}")
    return dict(params)


def _valid(parameter: Any, value: Any) -> bool:
    if parameter.type != "categorical":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            return False
        if parameter.type == "int" and not isinstance(value, int):
            return False
    if not parameter.contains(value):
        return False
    if parameter.type != "categorical" and parameter.step is not None:
        offset = (value - parameter.low) / parameter.step
        return abs(offset - round(offset)) <= _GRID_TOLERANCE * max(1.0, abs(offset))
    return True
