"""Hydra's sweep syntax as the Optuna sweeper reads it, the return value as metrics, the results
file, the sweeper's settings and its rules for ending a sweep (no Ray: quick)."""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from hydra_plugins.ugro_hpo_sweeper.config import UgroHpoSweeperConf
from ugro_hpo.errors import ConfigError
from ugro_hpo.optimize.protocol import trial_end
from ugro_hpo.space import parse_search_space
from ugro_hpo.sweeper.guard import SweepGuard
from ugro_hpo.sweeper.job import UnusableReturn, values_as_metrics
from ugro_hpo.sweeper.params import objectives, parse_params
from ugro_hpo.sweeper.reporting import report, reporting_to
from ugro_hpo.sweeper.results import optimization_results, write_optimization_results
from ugro_hpo.sweeper.settings import check_settings, sampler_spec
from ugro_hpo.trial_events import TrialResult, TrialStart

# (sweep, the parameter it gives) — the Optuna sweeper's 1.4 line: a range's end is excluded,
# a float grid only where it is exact, casts and shuffles give the values themselves.
SWEEPS = [
    ("choice(1,2)", {"type": "categorical", "choices": [1, 2]}),
    ("choice(true, false)", {"type": "categorical", "choices": [True, False]}),
    ("choice('hello', 'world')", {"type": "categorical", "choices": ["hello", "world"]}),
    ("range(1,3)", {"type": "int", "min": 1, "max": 2, "step": 1}),
    ("range(0,8,3)", {"type": "int", "min": 0, "max": 6, "step": 3}),
    ("range(3,0,-1)", {"type": "int", "min": 1, "max": 3, "step": 1}),
    ("range(-5.5, 5.5, step=0.5)", {"type": "float", "min": -5.5, "max": 5.0, "step": 0.5}),
    ("range(0.5, 5.5, step=1)", {"type": "float", "min": 0.5, "max": 4.5, "step": 1.0}),
    ("range(0,1,0.3)", {"type": "float", "min": 0.0, "max": 0.9, "step": 0.3}),
    ("range(2,3,4)", {"type": "categorical", "choices": [2]}),
    ("shuffle(range(1,3))", {"type": "categorical", "choices": "any order of [1, 2]"}),
    ("interval(1, 5)", {"type": "float", "min": 1.0, "max": 5.0, "log": False}),
    ("int(interval(-5, 5))", {"type": "int", "min": -5, "max": 5, "log": False}),
    ("tag(log, interval(1e-4, 1e-1))", {"type": "float", "min": 1e-4, "max": 1e-1, "log": True}),
    ("tag(log, int(interval(1, 5)))", {"type": "int", "min": 1, "max": 5, "log": True}),
    ("tag(label, interval(0, 1))", {"type": "float", "min": 0.0, "max": 1.0, "log": False}),
]


@pytest.mark.parametrize(("sweep", "expected"), SWEEPS)
def test_each_sweep_becomes_the_parameter_the_optuna_sweeper_gives(
    sweep: str, expected: dict
) -> None:
    parameter = parse_params({"key": sweep}, []).parameters["key"]
    if expected.get("choices") == "any order of [1, 2]":
        assert parameter["type"] == "categorical" and sorted(parameter["choices"]) == [1, 2]
    else:
        assert parameter == expected
        assert [type(v) for v in parameter.values()] == [type(v) for v in expected.values()]
    # and our parser takes it as it is
    parse_search_space({"parameters": {"key": parameter}, "objectives": [{"name": "v"}]}, "params")


def test_a_float_range_its_grid_cannot_hold_exactly_is_its_values() -> None:
    parameter = parse_params({"k": "range(-1000000000000000.0,-999999999999999.5,0.3)"}, [])
    assert parameter.parameters["k"] == {
        "type": "categorical",
        "choices": [-1000000000000000.0, -999999999999999.8],
    }


def test_a_long_range_is_counted_not_enumerated() -> None:
    space = parse_params({"k": "range(0,1000000000000)"}, [])
    assert space.parameters["k"] == {"type": "int", "min": 0, "max": 999999999999, "step": 1}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"x": "interval(0,"}, "cannot parse 'x=interval(0,'"),
        ({"x": "glob(*)"}, "'x=glob(*)': ConfigLoader is not set"),
        ({"x": "choice(1, 1)"}, "the same choice twice"),
        ({"x": "range(0,10,step=0)"}, "a range needs a step other than 0"),
        ({"x": "range(0,0)"}, "is an empty range"),
        ({"x": "range(3,1)"}, "is an empty range"),
        ({"x": "interval(5, 1)"}, "the interval's start must be below its end"),
    ],
)
def test_params_it_cannot_use_are_one_line_naming_the_key(params: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params(params, [])
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("hydra.sweeper.params:")


def test_fixed_values_and_deletions_go_to_every_job_and_the_command_line_wins() -> None:
    space = parse_params(
        {"x": "interval(0, 1)", "y": "choice(1, 2)"}, ["x=interval(2, 3)", "y=7", "~z"]
    )
    assert space.parameters == {"x": {"type": "float", "min": 2.0, "max": 3.0, "log": False}}
    assert space.fixed == ["y=7", "~z"]
    assert parse_params(None, []).parameters == {}  # a sweep without parameters runs its jobs


def test_a_trial_s_values_become_overrides_and_results_name_them_as_given() -> None:
    space = parse_params({"+db": "choice(mysql, 'post gres')", "lr": "interval(0, 1)"}, ["seed=3"])
    overrides = space.overrides({"db": "post gres", "lr": 0.25, "+w": 0.5})
    assert overrides == ["seed=3", "+db=post\\ gres", "lr=0.25", "+w=0.5"]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (parsed,) = OverridesParser.create().parse_overrides([overrides[1]])
    assert parsed.value() == "post gres"  # Hydra reads the value back as it was
    assert space.as_given({"db": "mysql", "lr": 0.5}) == {"+db": "mysql", "lr": 0.5}


def test_the_deprecated_search_space_is_read_as_the_1_3_line_reads_it() -> None:
    given = {"x": {"type": "float", "low": -5.5, "high": 5.5, "step": 0.5},
             "n": {"type": "int", "low": 1, "high": 8, "log": True},
             "c": {"type": "categorical", "choices": ["a", "b"]}}  # fmt: skip
    space = parse_params(None, [], search_space=given)
    assert space.parameters == {
        "x": {"type": "float", "min": -5.5, "max": 5.5, "step": 0.5},
        "n": {"type": "int", "min": 1, "max": 8, "log": True},
        "c": {"type": "categorical", "choices": ["a", "b"]},
    }
    assert parse_params({"y": "choice(1, 2)"}, [], search_space=given).parameters.keys() == {"y"}
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.search_space\.x: unknown key"):
        parse_params(None, [], search_space={"x": {"type": "float", "lo": 1}})


def test_directions_and_metric_names() -> None:
    assert objectives("maximize", None) == [{"name": "objective", "direction": "maximize"}]
    assert [o["name"] for o in objectives(["minimize", "maximize"], None)] == [
        "objective_0",
        "objective_1",
    ]
    assert objectives("minimize", "val_loss")[0]["name"] == "val_loss"
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.direction"):
        objectives("up", None)
    with pytest.raises(ConfigError, match="one name per direction"):
        objectives(["minimize", "minimize"], "loss")


def test_return_values_become_metrics() -> None:
    import numpy as np

    assert values_as_metrics(np.float32(0.5), ("loss",)) == {"loss": 0.5}
    assert values_as_metrics([1, 2.5], ("a", "b")) == {"a": 1.0, "b": 2.5}
    assert values_as_metrics({"a": 1}, ("a",)) == {"a": 1.0}
    for unusable, metrics, fragment in [
        (float("nan"), ("a",), "returned nan for 'a'"),
        ((1, 2, 3), ("a", "b"), "returned 3 values for 2 objective"),
        (1.0, ("a", "b"), "one value for 2 objectives"),
        ("fast", ("a",), "not a number"),
        (None, ("a",), "not a number"),
    ]:
        with pytest.raises(UnusableReturn, match=fragment):
            values_as_metrics(unusable, metrics)


def test_report_does_nothing_outside_a_sweep_and_reaches_the_trial_inside() -> None:
    report(1, loss=0.5)  # no sweep: nothing happens, nothing raises
    seen: list[tuple[int, dict]] = []
    with reporting_to(lambda step, **m: seen.append((step, m))):
        report(2, loss=0.25)
    report(3, loss=0.1)
    assert seen == [(2, {"loss": 0.25})]


def _records(space: Any, *trials: tuple[str, dict[str, Any], list[float] | None]) -> list[Any]:
    from ugro_hpo.results.records import TrialRecord

    names = space.metric_names
    return [TrialRecord(number=i, state=state, params=params,
                        values=dict(zip(names, values or [None] * len(names), strict=True)))
            for i, (state, params, values) in enumerate(trials)]  # fmt: skip


def test_optimization_results_has_the_optuna_sweeper_s_keys_and_names(tmp_path: Path) -> None:
    sweeps = parse_params({"+db": "choice(a, b)", "x": "interval(0, 2)"}, [])
    one = parse_search_space(
        {"parameters": sweeps.parameters, "objectives": [{"name": "objective"}]}, "p"
    )
    records = _records(one, ("complete", {"db": "a", "x": 1.5}, [2.25]),
                       ("failed", {"db": "b", "x": 0.0}, None),
                       ("complete", {"db": "b", "x": 0.5}, [0.25]))  # fmt: skip
    write_optimization_results(tmp_path / "one.yaml", optimization_results(records, one, sweeps))
    assert yaml.safe_load((tmp_path / "one.yaml").read_text()) == {
        "name": "optuna", "best_params": {"+db": "b", "x": 0.5}, "best_value": 0.25}  # fmt: skip
    two = parse_search_space({"parameters": sweeps.parameters,
                              "objectives": [{"name": "a"}, {"name": "b"}]}, "p")  # fmt: skip
    records = _records(two, ("complete", {"db": "a", "x": 1}, [1.0, 2.0]),
                       ("complete", {"db": "a", "x": 2}, [2.0, 1.0]),
                       ("complete", {"db": "b", "x": 0}, [3.0, 3.0]))  # fmt: skip
    assert optimization_results(records, two, sweeps) == {
        "name": "optuna",
        "solutions": [{"params": {"+db": "a", "x": 1}, "values": [1.0, 2.0]},
                      {"params": {"+db": "a", "x": 2}, "values": [2.0, 1.0]}],
    }  # fmt: skip
    none = optimization_results(_records(one, ("failed", {}, None)), one, sweeps)
    assert none == {"name": "optuna", "best_params": None, "best_value": None}


@pytest.mark.parametrize(
    ("sampler", "fragment"),
    [
        ("random", "where the config group hydra/sweeper/sampler is expected; choose a sampler "
                   "with hydra/sweeper/sampler=random"),
        (3, "with hydra/sweeper/sampler=tpe"),
        ({"seed": 3}, "with hydra/sweeper/sampler=tpe"),
        ({"_target_": "optuna.samplers.MOTPESampler"}, "the 'motpe' sampler was removed in Optuna 4.0"),
    ],
)  # fmt: skip
def test_a_sampler_that_is_not_a_preset_is_one_line(sampler: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sampler_spec(sampler)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_the_optuna_sweeper_s_own_preset_targets_build_the_same_samplers() -> None:
    grid = sampler_spec({"_target_": "optuna.samplers.GridSampler", "_partial_": True, "seed": 1})
    assert grid["_target_"] == "ugro_hpo.optimize.samplers.grid_sampler" and grid["_partial_"]
    target = "hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaiii_sampler"
    assert sampler_spec({"_target_": target})["_target_"] == "optuna.samplers.NSGAIIISampler"


SWEEPER_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(UgroHpoSweeperConf) if f.default is not MISSING
}


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"scheduler": "fastest"}, "hydra.sweeper.scheduler: 'fastest'"),
        ({"tracking": "paper"}, "hydra.sweeper.tracking: 'paper'"),
        ({"max_failure_rate": 1.5}, "hydra.sweeper.max_failure_rate: 1.5"),
        ({"max_failure_rate": -0.1}, "hydra.sweeper.max_failure_rate: -0.1"),
        ({"overrides": "max_steps=3"}, "hydra.sweeper.overrides: give a list"),
    ],
)
def test_settings_it_cannot_use_are_one_line(settings: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_settings({**SWEEPER_DEFAULTS, "scheduler": "fifo", **settings})
    assert str(caught.value).startswith(fragment)


def _ended(guard: SweepGuard, number: int, failed: bool, error: str = "RuntimeError") -> None:
    """A trial that started and ended, as the searcher tells of it (a stored Optuna trial)."""
    state = optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE
    attrs = {"error": f"{error}: trial {number} broke"} if failed else {}
    frozen = optuna.trial.create_trial(state=state, values=None if failed else [1.0],
                                       user_attrs=attrs)  # fmt: skip
    frozen.number = number
    guard.trial_started(TrialStart(f"t{number}", number, {}))
    guard.trial_finished(trial_end(f"t{number}", frozen))


# (max_failure_rate, n_jobs, n_trials, outcomes in the order trials end, the trial it stops at)
FAILURE_RATES = [
    (0.0, 1, 5, [False, True], 1),  # the default: the first failure stops the sweep
    (0.0, 2, 5, [False, False, False, True], 3),
    (0.5, 2, 20, [True, False, True, True], 3),  # 1 of 2 is not more than half; 2 of 2 is
    (0.5, 2, 3, [False, False, True], 2),  # the last group is as large as the trials left (1)
    (1.0, 2, 4, [True] * 8, None),  # never (the failure streak still stops such a sweep)
    (0.4, 3, 9, [True, False, False, False, True, False, True, True], 7),
]


@pytest.mark.parametrize(("rate", "n_jobs", "n_trials", "failures", "stops_at"), FAILURE_RATES)
def test_max_failure_rate_judges_groups_of_n_jobs_trials_as_they_end(
    rate: float, n_jobs: int, n_trials: int, failures: list[bool], stops_at: int | None
) -> None:
    guard = SweepGuard(rate, n_jobs=n_jobs, n_trials=n_trials)
    stopped = None
    for number, failed in enumerate(failures):
        _ended(guard, number, failed)
        if guard.tripped and stopped is None:
            stopped = number
    assert stopped == stops_at
    if stops_at is not None:
        assert guard.reason is not None and guard.exit_code == 3
        assert f"max_failure_rate={rate:g} exceeded" in guard.reason
        assert "RuntimeError: trial" in guard.reason  # the error of a trial that failed


def test_a_return_value_the_study_cannot_use_is_no_failure_of_the_app() -> None:
    """As in the Optuna sweeper: NaN or too few values fail the trial, and the sweep goes on."""
    guard = SweepGuard(0.0, n_jobs=1, n_trials=3)
    _ended(guard, 0, failed=True, error="UnusableReturn")
    assert not guard.tripped
    _ended(guard, 1, failed=True)
    assert guard.tripped


def test_a_scheduler_metric_missing_from_a_trial_s_first_report_ends_the_sweep() -> None:
    guard = SweepGuard(0.0, n_jobs=2, n_trials=4, scheduler_metric="objective", scheduler="asha")
    guard.trial_started(TrialStart("a", 0, {}))
    guard.trial_result(TrialResult("a", 0, 1, {"value": 0.5, "acc": 0.1}))
    assert guard.tripped and guard.exit_code == 2
    assert "hydra.sweeper.scheduler=asha watches the metric 'objective'" in str(guard.reason)
    assert "it reported: acc, value" in str(guard.reason)
    fine = SweepGuard(0.0, n_jobs=2, n_trials=4, scheduler_metric="loss", scheduler="asha")
    fine.trial_result(TrialResult("a", 0, 1, {"loss": 0.5}))
    assert not fine.tripped


def test_train_best_refuses_a_sweeper_study_and_says_where_its_best_parameters_are() -> None:
    from ugro_hpo.security.stored_objective import build_objective, check_objective

    checked = check_objective({"objective": {"_target_": "ugro_hpo.sweeper.job.HydraJob"}})
    with pytest.raises(ConfigError, match=r"optimization_results\.yaml"):
        build_objective(checked)


def test_errors_name_the_sweeper_s_key_from_the_error_s_own_key() -> None:
    from ugro_hpo.sweeper.settings import in_sweeper_terms

    assert (
        in_sweeper_terms(ConfigError("must be a whole number >= 1, got 0", key="parallel_jobs"))
        == "hydra.sweeper.n_jobs: must be a whole number >= 1, got 0"
    )
    assert in_sweeper_terms(ConfigError("above 1, use whole numbers", key="resources.gpu")) == (
        "hydra.sweeper.resources.gpu: above 1, use whole numbers"
    )
    # The text is never read for a key: a message that merely starts like one stays as it is.
    assert in_sweeper_terms(ConfigError("n_trials: as written")) == "n_trials: as written"
    assert str(ConfigError("x", key="mlflow.tracking_uri")) == "mlflow.tracking_uri: x"
