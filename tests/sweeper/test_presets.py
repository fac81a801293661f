"""The sampler presets of ``hydra/sweeper/sampler`` compose and build as the Optuna sweeper's
(its 1.4 line): the same names, every option its Optuna constructor takes, the same defaults,
each settable with a plain override (composition only, no Ray: quick)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_plugins.ugro_hpo_sweeper.config import SAMPLERS
from ugro_hpo.optimize.samplers import sampler_factory
from ugro_hpo.space import parse_search_space
from ugro_hpo.sweeper.settings import sampler_spec

APPS = Path(__file__).resolve().parents[1] / "fixtures" / "hydra_apps"


def sweeper_config(*overrides: str, app: str = "sphere") -> Any:
    """``hydra.sweeper`` of an app composed with ``overrides``, as the command line would."""
    where = APPS / "template" / "configs" if app == "train" else APPS
    with initialize_config_dir(str(where), version_base=None):
        cfg = compose(app, overrides=["hydra/sweeper=ugro_hpo", *overrides],
                      return_hydra_config=True)  # fmt: skip
    return cfg.hydra.sweeper


# (preset, option, the Optuna sweeper's default)
DEFAULTS = [
    ("tpe", "n_startup_trials", 10), ("tpe", "n_ei_candidates", 24), ("tpe", "multivariate", False),
    ("tpe", "group", False), ("tpe", "constant_liar", False), ("tpe", "constraints_func", None),
    ("tpe", "consider_prior", None), ("tpe", "seed", None),
    ("random", "seed", None), ("grid", "seed", None),
    ("cmaes", "n_startup_trials", 1), ("cmaes", "popsize", None), ("cmaes", "inc_popsize", -1),
    ("cmaes", "with_margin", False), ("cmaes", "lr_adapt", False),
    ("cmaes", "use_separable_cma", False), ("cmaes", "restart_strategy", None),
    ("nsgaii", "population_size", 50), ("nsgaii", "crossover", None), ("nsgaii", "mutation", None),
    ("nsgaii", "crossover_prob", 0.9), ("nsgaii", "swapping_prob", 0.5),
    ("nsgaiii", "population_size", 50), ("nsgaiii", "reference_points", None),
    ("nsgaiii", "dividing_parameter", 3),
    ("gp", "n_startup_trials", 10), ("gp", "deterministic_objective", False),
    ("qmc", "qmc_type", "sobol"), ("qmc", "scramble", False),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "option", "default"), DEFAULTS)
def test_each_preset_has_the_optuna_sweeper_s_default(
    preset: str, option: str, default: Any
) -> None:
    assert OmegaConf.to_container(OmegaConf.structured(SAMPLERS[preset]))[option] == default


def test_the_sweeper_has_the_optuna_sweeper_s_keys_and_defaults() -> None:
    conf = sweeper_config(app="train")  # an app whose config sets none of them
    expected = {"direction": "minimize", "storage": None, "study_name": None, "n_trials": 20,
                "n_jobs": 2, "max_failure_rate": 0.0, "search_space": None, "params": None,
                "custom_search_space": None}  # fmt: skip
    assert {key: conf[key] for key in expected} == expected


# (preset, override, value) — as the Optuna sweeper's own tests set them
OVERRIDES = [
    ("grid", "seed=123", 123), ("tpe", "group=true", True), ("tpe", "constant_liar=true", True),
    ("tpe", "constraints_func=test_constraints", "test_constraints"),
    ("cmaes", "n_startup_trials=7", 7), ("cmaes", "popsize=4", 4),
    ("cmaes", "with_margin=true", True), ("cmaes", "lr_adapt=true", True),
    ("nsgaii", "crossover=test_crossover", "test_crossover"),
    ("nsgaiii", "dividing_parameter=4", 4), ("qmc", "scramble=true", True),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "override", "value"), OVERRIDES)
def test_every_option_is_set_with_a_plain_override(preset: str, override: str, value: Any) -> None:
    sweeper = sweeper_config(f"hydra/sweeper/sampler={preset}", f"hydra.sweeper.sampler.{override}")
    assert sweeper.sampler[override.split("=")[0]] == value


@pytest.mark.parametrize("preset", sorted(set(SAMPLERS) - {"motpe"}))
def test_every_preset_builds_its_optuna_sampler_with_its_options(preset: str) -> None:
    spec = sampler_spec(
        OmegaConf.to_container(sweeper_config(f"hydra/sweeper/sampler={preset}").sampler)
    )
    spec.pop("seed")
    target = spec["_target_"]
    if target.startswith("optuna.samplers."):  # every option is a parameter of the constructor
        constructor = getattr(optuna.samplers, target.rsplit(".", 1)[1])
        options = {k: v for k, v in spec.items() if not k.startswith("_")}
        inspect.signature(constructor).bind(**options)
    space = parse_search_space(
        {"parameters": {"x": {"type": "float", "min": 0, "max": 1, "step": 0.5}},
         "objectives": [{"name": "v"}, {"name": "w"}] if preset.startswith("nsga") else [{"name": "v"}]},
        "test",
    )  # fmt: skip
    sampler = sampler_factory(spec).build(space, seed=3)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    if preset == "tpe":  # Optuna's own default differs: the preset's holds
        assert sampler._constant_liar is False and sampler._multivariate is False
    if preset == "cmaes":
        built = sampler_factory({**spec, "popsize": 4}).build(space, seed=3)
        assert built._popsize == 4


def test_motpe_composes_for_configs_written_for_it_and_is_refused_with_the_reason() -> None:
    sweeper = sweeper_config(
        "hydra/sweeper/sampler=motpe", "hydra.sweeper.sampler.n_ehvi_candidates=12"
    )
    with pytest.raises(Exception, match=r"the 'motpe' sampler was removed in Optuna 4\.0"):
        sampler_spec(OmegaConf.to_container(sweeper.sampler))


def test_a_value_where_the_sampler_group_is_expected_composes_and_is_caught_by_the_sweeper() -> (
    None
):
    sweeper = sweeper_config("hydra.sweeper.sampler=random")
    assert sweeper.sampler == "random"  # the sweeper then says so in one line (test_params)
