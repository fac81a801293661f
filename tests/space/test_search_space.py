"""Loading and sampling search spaces in UGRO's schema."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import UGRO_SPACES

from ugro_hpo.config import conf_dir
from ugro_hpo.errors import SearchSpaceError
from ugro_hpo.optimize.samplers import grid_sampler
from ugro_hpo.space import load_search_space, parse_search_space

VALID_FILES = sorted(UGRO_SPACES.glob("*.yaml")) + sorted(
    (conf_dir() / "search_space").glob("*.yaml")
)


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_valid_files_load(path: Path) -> None:
    space = load_search_space(path)
    assert space.parameters and space.objectives
    raw = yaml.safe_load(path.read_text())
    assert set(space.names) == set(raw["parameters"])


OBJ = "objectives: [{name: eval_loss, direction: minimize}]\n"
INVALID = [
    ("not-a-mapping", "- a\n- b\n", None, "must be a mapping"),
    ("bad-yaml", "parameters: {a: [1, 2\n", None, "invalid YAML at line"),
    (
        "unknown-top-key",
        "parameters: {a: {type: int, min: 1, max: 2}}\nsearch: 1\n" + OBJ,
        None,
        "unknown top-level key",
    ),
    ("no-parameters", OBJ, None, "'parameters' must be a non-empty mapping"),
    (
        "empty-parameters",
        "parameters: {}\n" + OBJ,
        None,
        "'parameters' must be a non-empty mapping",
    ),
    (
        "bad-name",
        "parameters: {'1x': {type: int, min: 1, max: 2}}\n" + OBJ,
        "1x",
        "must be identifiers",
    ),
    ("spec-not-mapping", "parameters: {a: 3}\n" + OBJ, "a", "must be a mapping"),
    ("unknown-type", "parameters: {a: {type: bool}}\n" + OBJ, "a", "type must be one of"),
    (
        "unknown-key",
        "parameters: {a: {type: int, min: 1, maximum: 2}}\n" + OBJ,
        "a",
        "unknown key(s) ['maximum']",
    ),
    ("missing-max", "parameters: {a: {type: float, min: 1}}\n" + OBJ, "a", "need 'max'"),
    (
        "min-above-max",
        "parameters: {a: {type: int, min: 70, max: 64}}\n" + OBJ,
        "a",
        "min (70) is greater than max (64)",
    ),
    (
        "log-nonpositive",
        "parameters: {a: {type: float, min: 0.0, max: 1.0, log: true}}\n" + OBJ,
        "a",
        "needs min > 0",
    ),
    (
        "bad-step",
        "parameters: {a: {type: int, min: 1, max: 9, step: 0}}\n" + OBJ,
        "a",
        "'step' must be positive",
    ),
    (
        "step-and-log",
        "parameters: {a: {type: float, min: 1, max: 9, step: 1, log: true}}\n" + OBJ,
        "a",
        "cannot be combined",
    ),
    (
        "unreachable-max",
        "parameters: {a: {type: int, min: 4, max: 62, step: 4}}\n" + OBJ,
        "a",
        "not reachable",
    ),
    (
        "fractional-int",
        "parameters: {a: {type: int, min: 1.5, max: 4}}\n" + OBJ,
        "a",
        "whole number",
    ),
    (
        "string-bound",
        "parameters: {a: {type: float, min: low, max: 4}}\n" + OBJ,
        "a",
        "'min' must be a number",
    ),
    (
        "empty-choices",
        "parameters: {a: {type: categorical, choices: []}}\n" + OBJ,
        "a",
        "non-empty 'choices'",
    ),
    (
        "duplicate-choices",
        "parameters: {a: {type: categorical, choices: [8, 8]}}\n" + OBJ,
        "a",
        "duplicates",
    ),
    (
        "nested-choice",
        "parameters: {a: {type: categorical, choices: [{x: 1}]}}\n" + OBJ,
        "a",
        "choices must be numbers",
    ),
    (
        "default-outside",
        "parameters: {a: {type: float, min: 0, max: 1, default: 2}}\n" + OBJ,
        "a",
        "outside [0.0, 1.0]",
    ),
    (
        "default-off-grid",
        "parameters: {a: {type: int, min: 4, max: 64, step: 4, default: 6}}\n" + OBJ,
        "a",
        "not on the grid",
    ),
    (
        "default-not-choice",
        "parameters: {a: {type: categorical, choices: [x, y], default: z}}\n" + OBJ,
        "a",
        "not one of the choices",
    ),
    (
        "condition-unknown-name",
        "parameters: {a: {type: int, min: 1, max: 2, condition: 'b > 1'}}\n" + OBJ,
        "a",
        "not a parameter",
    ),
    (
        "condition-call",
        "parameters: {a: {type: int, min: 1, max: 2}, b: {type: int, min: 1, max: 2, condition: 'print(a)'}}\n"
        + OBJ,
        "b",
        "function call",
    ),
    (
        "condition-cycle",
        "parameters: {a: {type: int, min: 1, max: 2, condition: 'b > 1'}, b: {type: int, min: 1, max: 2, condition: 'a > 1'}}\n"
        + OBJ,
        None,
        "cycle",
    ),
    (
        "constraint-syntax",
        "parameters: {a: {type: int, min: 1, max: 2}}\nconstraints: ['a >']\n" + OBJ,
        None,
        "not a valid expression",
    ),
    (
        "constraint-not-list",
        "parameters: {a: {type: int, min: 1, max: 2}}\nconstraints: 'a > 1'\n" + OBJ,
        None,
        "must be a list",
    ),
    (
        "no-objectives",
        "parameters: {a: {type: int, min: 1, max: 2}}\n",
        None,
        "'objectives' is missing",
    ),
    (
        "bad-direction",
        "parameters: {a: {type: int, min: 1, max: 2}}\nobjectives: [{name: loss, direction: lower}]\n",
        None,
        "minimize or maximize",
    ),
    (
        "duplicate-objective",
        "parameters: {a: {type: int, min: 1, max: 2}}\nobjectives: [{name: l}, {name: l}]\n",
        None,
        "same metric twice",
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "parameter", "problem"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_files_give_one_line_errors(
    tmp_path: Path, case: str, text: str, parameter: str | None, problem: str
) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert problem in message
    if parameter:
        assert f"parameter {parameter!r}" in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="file not found"):
        load_search_space(tmp_path / "nope.yaml")


def _space(text: str):
    return parse_search_space(yaml.safe_load(text), source="test")


def _sample(space, n: int, sampler=None) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(
        sampler=sampler or optuna.samplers.RandomSampler(seed=0),
        directions=["minimize"] * len(space.objectives),
    )
    for _ in range(n):
        trial = study.ask()
        space.sample(trial)
        study.tell(trial, [0.0] * len(space.objectives))
    return study.trials


def test_bounds_are_inclusive_and_steps_respected() -> None:
    space = _space("""
parameters:
  r: {type: int, min: 4, max: 12, step: 4}
  f: {type: float, min: 0.0, max: 0.2, step: 0.1}
objectives: [{name: loss}]
""")
    grid = grid_sampler(space, seed=0)
    seen = {(t.params["r"], round(t.params["f"], 6)) for t in _sample(space, 9, grid)}
    assert seen == {(r, f) for r in (4, 8, 12) for f in (0.0, 0.1, 0.2)}


def test_log_scale_stays_within_bounds() -> None:
    space = _space(
        "parameters: {lr: {type: float, min: 1.0e-5, max: 1.0e-3, log: true}}\nobjectives: [{name: loss}]\n"
    )
    values = [t.params["lr"] for t in _sample(space, 200)]
    assert min(values) >= 1e-5 and max(values) <= 1e-3
    # log-uniform: about half the samples below the geometric midpoint 1e-4
    assert 0.35 < sum(v < 1e-4 for v in values) / len(values) < 0.65


def test_conditional_parameters_are_sampled_only_when_active() -> None:
    space = load_search_space(UGRO_SPACES / "llama_lora_hpo_conditional.yaml")
    for trial in _sample(space, 60):
        params = trial.params
        optimizer = params["optimizer_type"]
        assert ("momentum" in params) == (optimizer == "sgd")
        assert ("weight_decay" in params) == (optimizer == "adamw")
        assert ("beta1" in params) == (optimizer in ("adam", "adamw"))
        assert ("max_grad_norm" in params) == (params["batch_size"] >= 32)


def test_constraints_are_recorded_on_the_trial() -> None:
    space = _space("""
parameters:
  x: {type: float, min: 0.0, max: 1.0}
constraints: ["x <= 0.5"]
objectives: [{name: loss}]
""")
    for trial in _sample(space, 30):
        violated = trial.params["x"] > 0.5
        assert trial.constraints == {"c0": 1.0 if violated else 0.0}


def test_constraint_over_an_inactive_parameter_does_not_apply() -> None:
    space = load_search_space(UGRO_SPACES / "llama_lora_hpo_conditional.yaml")
    sgd = {
        "optimizer_type": "sgd",
        "momentum": 0.9,
        "lora_r": 8,
        "lora_alpha": 16.0,
        "learning_rate": 1e-4,
    }
    assert space.violations(sgd) == []  # "beta1 < beta2" names parameters sgd does not have
    adam = {**sgd, "optimizer_type": "adam", "beta1": 0.999, "beta2": 0.99}
    assert space.violations(adam) == ["beta1 < beta2"]


def test_ugro_dropout_range_constraint_is_satisfiable() -> None:
    space = load_search_space(UGRO_SPACES / "llama2_lora.yaml")
    point = {**space.defaults()}
    assert space.violations(point) == []


def test_sample_returns_the_violation_for_the_trainable() -> None:
    space = _space(
        "parameters: {x: {type: int, min: 5, max: 5}}\nconstraints: ['x < 3']\nobjectives: [{name: l}]\n"
    )
    study = optuna.create_study()
    proposal = space.sample(study.ask())
    assert (proposal.params, proposal.violation, proposal.outside) == ({"x": 5}, "x < 3", None)


def test_defaults_follow_conditions() -> None:
    space = load_search_space(UGRO_SPACES / "llama_lora_hpo_conditional.yaml")
    defaults = space.defaults()
    assert defaults["optimizer_type"] == "adamw"
    assert "momentum" not in defaults  # only for sgd
    assert "max_grad_norm" not in defaults  # only for batch_size >= 32; default is 16
    assert defaults["beta1"] == 0.9


def test_fingerprint_ignores_defaults_and_comments() -> None:
    a = _space(
        "parameters: {x: {type: float, min: 0, max: 1, default: 0.5}}\nobjectives: [{name: l}]\n"
    )
    b = _space("# c\nparameters: {x: {type: float, min: 0, max: 1}}\nobjectives: [{name: l}]\n")
    c = _space("parameters: {x: {type: float, min: 0, max: 2}}\nobjectives: [{name: l}]\n")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_grid_needs_steps_for_floats() -> None:
    space = _space("parameters: {x: {type: float, min: 0, max: 1}}\nobjectives: [{name: l}]\n")
    with pytest.raises(SearchSpaceError, match="give float parameter 'x' a 'step'"):
        space.grid()


def test_values_are_plain_python_numbers() -> None:
    space = load_search_space(UGRO_SPACES / "llama_lora_hpo.yaml")
    for trial in _sample(space, 5):
        assert isinstance(trial.params["lora_r"], int)
        assert isinstance(trial.params["lora_alpha"], float) and math.isfinite(
            trial.params["lora_alpha"]
        )
