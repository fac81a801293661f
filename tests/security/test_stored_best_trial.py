"""A stored best trial is data from a shared database: `export-best` and `train-best` check its
parameters against the study's search space (names, types, bounds, step, choices, conditions,
constraints) before they write `best_params.yaml` or train; a trial edited to hold anything
else is one line, exit code 2, and nothing is written or trained."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna
import pytest
import yaml
from attack_support import VICTIM, StoredCopy, one_line_error, snapshot

pytestmark = pytest.mark.integration

COMMANDS = {
    "export-best": ["hpo", "export-best", "--study-name", VICTIM, "--output", "best.yaml"],
    "train-best": ["hpo", "train-best", "--study-name", VICTIM, "--output-dir", "final"],
}
FLOAT = json.dumps(
    {
        "name": "FloatDistribution",
        "attributes": {"low": 0.0, "high": 1.0, "step": None, "log": False},
    }
)
WIDE = json.dumps(
    {
        "name": "FloatDistribution",
        "attributes": {"low": -1e308, "high": 1e308, "step": None, "log": False},
    }
)
CHOICE = json.dumps({"name": "CategoricalDistribution", "attributes": {"choices": ["os:system"]}})
BIG_INT = json.dumps(
    {"name": "IntDistribution", "attributes": {"low": 1, "high": 10**6, "step": 1, "log": False}}
)
STRING = json.dumps({"name": "CategoricalDistribution", "attributes": {"choices": ["abc"]}})  # fmt: skip


def _best_id(stored: StoredCopy) -> int:
    study = stored.study()
    best = study.best_trial
    storage = optuna.storages.RDBStorage(stored.url)
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(VICTIM), best.number
    )


def _set(name: str, value: float, distribution: str = WIDE) -> Callable[[StoredCopy, int], None]:
    return lambda s, t: s.sql(
        "UPDATE trial_params SET param_value = ?, distribution_json = ? WHERE trial_id = ? "
        "AND param_name = ?", value, distribution, t, name)  # fmt: skip


def _add(name: str, value: float, distribution: str) -> Callable[[StoredCopy, int], None]:
    return lambda s, t: s.sql(
        "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
        "VALUES (?, ?, ?, ?)", t, name, value, distribution)  # fmt: skip


def _both(*edits: Callable[[StoredCopy, int], None]) -> Callable[[StoredCopy, int], None]:
    def edit(s: StoredCopy, t: int) -> None:
        for one in edits:
            one(s, t)

    return edit


EDITS: dict[str, tuple[Callable[[StoredCopy, int], None], str]] = {
    "a value far above its bound": (_set("x1", 1e6), "outside its search space"),
    "a value below its bound": (_set("x1", -0.5), "outside its search space"),
    "1e308": (_set("x2", 1e308), "outside its search space"),
    "a value of the wrong type": (_set("x1", 0, STRING), "outside its search space"),
    "an extra key naming a function": (_add("objective.fn", 0, CHOICE), "does not define"),
    "an extra key of a huge rank": (_add("lora_r", 999_999, BIG_INT), "does not define"),
    "a parameter missing": (lambda s, t: s.sql("DELETE FROM trial_params WHERE trial_id = ? AND "
                                               "param_name = 'x2'", t), "lacks parameter 'x2'"),
    "the constraint broken": (_both(_set("x1", 0.9, FLOAT), _set("x2", 0.9, FLOAT)), "violates"),
    "out of range and an extra key": (_both(_set("x1", 5.0), _add("objective.fn", 0, CHOICE)),
                                      "does not define"),
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_best_trial_is_refused_and_nothing_is_written_or_trained(
    stored: StoredCopy, ugro: Any, edit: str, command: str
) -> None:
    change, message = EDITS[edit]
    change(stored, _best_id(stored))
    before = snapshot(stored.root)
    line = one_line_error(ugro(*COMMANDS[command]))
    assert message in line and "may have been altered" in line, line
    assert snapshot(stored.root) == before
    assert not (stored.root / "best.yaml").exists() and not (stored.root / "final").exists()


def test_the_untouched_best_trial_is_exported_as_it_was_stored(
    stored: StoredCopy, ugro: Any
) -> None:
    best = stored.study().best_trial
    assert ugro(*COMMANDS["export-best"]).code in (0, None)
    assert yaml.safe_load((stored.root / "best.yaml").read_text()) == best.params


def test_conditions_and_steps_are_checked_too() -> None:
    from ugro_hpo.space import parse_search_space
    from ugro_hpo.space.stored_params import StoredParamsRefused, check_stored_params

    space = parse_search_space(
        {"parameters": {"opt": {"type": "categorical", "choices": ["adam", "sgd"]},
                        "momentum": {"type": "float", "min": 0.5, "max": 0.9, "condition": "opt == 'sgd'"},
                        "r": {"type": "int", "min": 4, "max": 64, "step": 4}},
         "objectives": [{"name": "loss"}]}, "test")  # fmt: skip
    assert check_stored_params({"opt": "sgd", "momentum": 0.7, "r": 8}, space, 1)
    assert check_stored_params({"opt": "adam", "r": 64}, space, 1)
    for params, message in [
        ({"opt": "adam", "momentum": 0.7, "r": 8}, "does not hold"),
        ({"opt": "sgd", "r": 8}, "lacks parameter 'momentum'"),
        ({"opt": "sgd", "momentum": 0.7, "r": 6}, "outside its search space"),
        ({"opt": "sgd", "momentum": 0.7, "r": 8.0}, "outside its search space"),
        ({"opt": "sgd", "momentum": 0.7, "r": True}, "outside its search space"),
        ({"opt": "SGD", "r": 8}, "outside its search space"),
        ({"opt": "sgd", "momentum": float("nan"), "r": 8}, "outside its search space"),
        ({"opt": "sgd", "momentum": float("inf"), "r": 8}, "outside its search space"),
    ]:
        with pytest.raises(StoredParamsRefused, match=message):
            check_stored_params(params, space, 1)
