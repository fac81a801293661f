"""Samplers: checked without being built, built once, and `search=auto` choosing and switching."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
import yaml

from ugro_hpo.config.plan import build_plan, build_sampler
from ugro_hpo.errors import ConfigError, SearchSpaceError
from ugro_hpo.optimize.samplers import AutoSampler, auto_reason, grid_sampler, sampler_factory
from ugro_hpo.space import parse_search_space

NUMERIC = parse_search_space(yaml.safe_load(
    "parameters: {x: {type: float, min: -5, max: 10}, y: {type: float, min: 0, max: 15}}\n"
    "constraints: ['x + y < 20']\nobjectives: [{name: v}]\n"), "numeric")  # fmt: skip


def test_a_sampler_is_checked_without_being_built() -> None:
    factory = sampler_factory({"_target_": "optuna.samplers.TPESampler", "seed": 1})
    assert factory.name(NUMERIC) == "optuna.samplers.TPESampler"
    with pytest.raises(ConfigError, match="does not take these settings"):
        sampler_factory({"_target_": "optuna.samplers.TPESampler", "sed": 1})
    with pytest.raises(ConfigError, match="cannot build"):  # a bad value shows when built
        sampler_factory({"_target_": "optuna.samplers.NSGAIISampler", "population_size": 1}).build(
            NUMERIC, 0
        )


def test_a_grid_search_needs_a_finite_grid_at_validation(compose, tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="a 'step'"):
        build_plan(
            compose("objective=synthetic", "search_space=quadratic", "search=grid"), tmp_path
        )


GRID = parse_search_space(yaml.safe_load(
    "parameters: {a: {type: categorical, choices: [1, 2, 3, 4], default: 3},\n"
    "             b: {type: float, min: 0.0, max: 1.0, step: 0.5, default: 0.5}}\n"
    "objectives: [{name: v}]\n"), "grid")  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_a_grid_runs_the_defaults_point_first_and_every_point_once(seed: int) -> None:
    """Under any seed's shuffle the defaults' point comes first, then each of the 12 once."""
    study = optuna.create_study(sampler=grid_sampler(GRID, seed=seed))
    points = []
    for _ in range(12):
        trial = study.ask()
        points.append(
            (
                trial.suggest_categorical("a", [1, 2, 3, 4]),
                trial.suggest_float("b", 0.0, 1.0, step=0.5),
            )
        )
        study.tell(trial, 0.0)
    assert points[0] == (3, 0.5)
    assert len(set(points)) == 12


def test_the_plan_builds_the_sampler_once_with_the_seed_it_is_given(
    compose, tmp_path: Path
) -> None:
    plan = build_plan(
        compose("objective=synthetic", "search_space=branin", "search=random"), tmp_path
    )
    first, again, other = (build_sampler(plan, o) for o in (0, 0, 5))
    draws = [
        optuna.create_study(sampler=s).ask().suggest_float("x1", -5, 10)
        for s in (first, again, other)
    ]
    assert draws[0] == draws[1] != draws[2]


def _ask(study: optuna.Study) -> float:
    started = time.perf_counter()
    trial = study.ask()
    x, y = trial.suggest_float("x", -5, 10), trial.suggest_float("y", 0, 15)
    trial.set_constraint("c0", 0.0)
    study.tell(trial, (x - 2) ** 2 + (y - 3) ** 2)
    return time.perf_counter() - started


def test_auto_uses_a_gp_on_small_numeric_spaces_then_hands_over_to_tpe() -> None:
    sampler = AutoSampler(NUMERIC, seed=0, n_startup_trials=3, gp_max_trials=6)
    study = optuna.create_study(sampler=sampler)
    for _ in range(6):
        assert isinstance(sampler.current(study), optuna.samplers.GPSampler)
        _ask(study)
    assert (
        isinstance(sampler.current(study), optuna.samplers.TPESampler) and sampler.switched_at == 6
    )
    _ask(study)
    assert len(study.trials) == 7
    assert "Gaussian process" in auto_reason(NUMERIC)


def test_auto_uses_tpe_for_categorical_or_conditional_spaces() -> None:
    space = parse_search_space(yaml.safe_load(
        "parameters: {o: {type: categorical, choices: [a, b]}, m: {type: float, min: 0, max: 1, condition: \"o == 'a'\"}}\n"
        "objectives: [{name: v}]\n"), "cat")  # fmt: skip
    sampler = AutoSampler(space, seed=0, n_startup_trials=10)
    assert isinstance(sampler.current(optuna.create_study()), optuna.samplers.TPESampler)
    assert "conditional parameters" in auto_reason(space)
