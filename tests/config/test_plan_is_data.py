"""The plan is plain data: it pickles, comes back equal, and holds no live object (the
objective, sampler and trackers built from it travel beside it, in `LiveParts`)."""

from __future__ import annotations

import dataclasses
import enum
import pickle
from pathlib import Path
from typing import Any

import pytest
from conftest import QUICK

from ugro_hpo.config.plan import Plan, build_plan, plan_and_parts
from ugro_hpo.space.expressions import Expression

PLAIN = (str, int, float, bool, type(None), Path, enum.Enum)


def live_values(value: Any, where: str) -> list[str]:
    """Where ``value`` holds anything other than plain data (frozen dataclasses of it count)."""
    if isinstance(value, PLAIN):
        return []
    if isinstance(value, Expression):  # data by its source: it pickles as (source, names)
        _rebuild, args = value.__reduce__()
        return live_values(args, f"{where} (as pickled)")
    if isinstance(value, (list, tuple, frozenset)):
        return [
            bad
            for i, item in enumerate(sorted(value) if isinstance(value, frozenset) else value)
            for bad in live_values(item, f"{where}[{i}]")
        ]
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in live_values(k, f"{where} key") + live_values(v, f"{where}[{k!r}]")]  # fmt: skip
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not value.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            return [f"{where}: a mutable {type(value).__name__}"]
        return [bad for f in dataclasses.fields(value) for bad in live_values(getattr(value, f.name), f"{where}.{f.name}")]  # fmt: skip
    return [f"{where}: {type(value).__name__}"]


@pytest.mark.parametrize(
    "overrides",
    [QUICK, [*QUICK, "tracking=mlflow", "search=auto"], ["objective=lora", "tracking=none"]],
)
def test_a_plan_pickles_back_equal_and_holds_only_data(compose: Any, tmp_path: Path, overrides: list[str]) -> None:  # fmt: skip
    plan = build_plan(compose(*overrides), tmp_path / "run")
    assert isinstance(plan, Plan)
    assert live_values(plan, "plan") == []
    again = pickle.loads(pickle.dumps(plan))
    assert again == plan


def test_the_live_objects_travel_beside_the_plan(compose: Any, tmp_path: Path) -> None:
    plan, parts = plan_and_parts(compose(*QUICK, "tracking=mlflow"), tmp_path / "run")
    assert parts.objective is not None and parts.sent_objective == plan.objective
    assert [t.name for t in parts.trackers] == ["mlflow"]
    given = parts.objective
    plan, parts = plan_and_parts(compose(*QUICK), tmp_path / "run", objective=given)
    assert parts.sent_objective is given and parts.objective is given
    assert live_values(plan, "plan") == []
