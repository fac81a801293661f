"""Hydra's sweep syntax as a search space, the return value as metrics, the results file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from ugro_hpo.errors import ConfigError
from ugro_hpo.space import parse_search_space
from ugro_hpo.sweeper.job import values_as_metrics
from ugro_hpo.sweeper.params import objectives, parse_params
from ugro_hpo.sweeper.reporting import report, reporting_to
from ugro_hpo.sweeper.sweep import write_optimization_results


def test_each_sweep_becomes_the_parameter_the_optuna_sweeper_would_give() -> None:
    space = parse_params(
        {
            "x": "range(-5.5, 5.5, step=0.5)",
            "y": "choice(-5, 0, 5)",
            "model.lr": "tag(log, interval(1e-4, 1e-1))",
            "layers": "range(1, 4)",
            "width": "interval(8, 64)",
            "db": "choice(mysql, 'post gres')",
            "epochs": "3",
        },
        [],
    )
    p = space.parameters
    assert p["x"] == {"type": "float", "min": -5.5, "max": 5.0, "step": 0.5}
    assert p["y"] == {"type": "categorical", "choices": [-5, 0, 5]}
    assert p["model.lr"] == {"type": "float", "min": 1e-4, "max": 1e-1, "log": True}
    assert p["layers"] == {"type": "int", "min": 1, "max": 3, "step": 1}  # end excluded
    assert p["width"]["type"] == "float"  # Hydra reads interval bounds as floats
    assert p["db"] == {"type": "categorical", "choices": ["mysql", "post gres"]}
    assert space.fixed == ["epochs=3"]
    # The space is one our parser accepts (dotted Hydra keys included).
    parsed = parse_search_space({"parameters": p, "objectives": [{"name": "v"}]}, "params")
    assert "model.lr" in parsed.names


def test_a_trial_s_values_become_that_job_s_overrides_with_quoting() -> None:
    space = parse_params({"+db": "choice(mysql, 'post gres')", "lr": "interval(0, 1)"}, ["seed=3"])
    overrides = space.overrides({"db": "post gres", "lr": 0.25})
    assert overrides == ["seed=3", "+db=post\\ gres", "lr=0.25"]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (parsed,) = OverridesParser.create().parse_overrides([overrides[1]])
    assert parsed.value() == "post gres"  # Hydra reads the value back as it was


def test_the_command_line_wins_over_params() -> None:
    space = parse_params({"x": "interval(0, 1)", "y": "choice(1, 2)"}, ["x=interval(2, 3)", "y=7"])
    assert space.parameters["x"]["min"] == 2.0 and "y" not in space.parameters
    assert space.fixed == ["y=7"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"x": "interval(0,"}, "cannot parse 'x=interval(0,'"),
        ({"x": "glob(*)"}, "'x=glob(*)': ConfigLoader is not set"),
        ({"x": "choice(1, 1)"}, "the same choice twice"),
        ({"x": "3"}, "nothing to search"),
    ],
)
def test_params_it_cannot_use_are_one_line_naming_the_key(params: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params(params, [])
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("hydra.sweeper.params:")


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
    assert math.isnan(values_as_metrics(float("nan"), ("a",))["a"])  # refused by the trainable
    with pytest.raises(ValueError, match="returned 3 values for 2 objective"):
        values_as_metrics((1, 2, 3), ("a", "b"))
    with pytest.raises(ValueError, match="one value for 2 objectives"):
        values_as_metrics(1.0, ("a", "b"))
    with pytest.raises(TypeError, match="not a number"):
        values_as_metrics("fast", ("a",))
    with pytest.raises(TypeError, match="not a number"):
        values_as_metrics(None, ("a",))


def test_report_does_nothing_outside_a_sweep_and_reaches_the_trial_inside() -> None:
    report(1, loss=0.5)  # no sweep: nothing happens, nothing raises
    seen: list[tuple[int, dict]] = []
    with reporting_to(lambda step, **m: seen.append((step, m))):
        report(2, loss=0.25)
    report(3, loss=0.1)
    assert seen == [(2, {"loss": 0.25})]


def test_optimization_results_has_the_optuna_sweeper_s_keys(tmp_path: Path) -> None:
    one = {"objectives": [{"name": "objective"}],
           "best": {"params": {"x": 1.5, "db": "a"}, "metrics": {"objective": 0.25, "t": 3}}}  # fmt: skip
    write_optimization_results(tmp_path / "one.yaml", one)
    assert yaml.safe_load((tmp_path / "one.yaml").read_text()) == {
        "name": "ugro_hpo", "best_params": {"x": 1.5, "db": "a"}, "best_value": 0.25}  # fmt: skip
    two = {"objectives": [{"name": "a"}, {"name": "b"}],
           "pareto_front": [{"params": {"x": 1}, "metrics": {"a": 1.0, "b": 2.0}},
                            {"params": {"x": 2}, "metrics": {"a": 2.0, "b": 1.0}}]}  # fmt: skip
    write_optimization_results(tmp_path / "two.yaml", two)
    solutions = yaml.safe_load((tmp_path / "two.yaml").read_text())["solutions"]
    assert solutions == [{"params": {"x": 1}, "values": [1.0, 2.0]},
                         {"params": {"x": 2}, "values": [2.0, 1.0]}]  # fmt: skip


def test_train_best_refuses_a_sweeper_study_and_says_where_its_best_parameters_are() -> None:
    from ugro_hpo.security.stored_objective import build_objective, check_objective

    checked = check_objective({"objective": {"_target_": "ugro_hpo.sweeper.job.HydraJob"}})
    with pytest.raises(ConfigError, match=r"optimization_results\.yaml"):
        build_objective(checked)
