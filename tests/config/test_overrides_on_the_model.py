"""Overrides applied to a config built from the settings model, without a Hydra composition
(what the sweeper's ``hydra.sweeper.overrides`` go through)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ugro_hpo.config.compose import apply_overrides, group_option
from ugro_hpo.config.schema import AppSettings
from ugro_hpo.errors import ConfigError

WHERE = "hydra.sweeper.overrides"


def _config() -> object:
    cfg = OmegaConf.structured(AppSettings)
    cfg.tracking = group_option("tracking", "none")
    return cfg


def test_values_groups_and_tags_are_applied() -> None:
    cfg = _config()
    apply_overrides(cfg, ["max_consecutive_failures=3", "ray.num_cpus=2", "tracking=dual",
                          "+tags.team=nlp", "resources.gpu=0.5"], WHERE)  # fmt: skip
    assert cfg.max_consecutive_failures == 3 and cfg.ray.num_cpus == 2
    assert set(cfg.tracking.callbacks) == {"mlflow", "wandb"} and cfg.tracking.required
    assert cfg.tags == {"team": "nlp"} and cfg.resources.gpu == 0.5


def test_a_group_option_takes_its_defaults_list_first() -> None:
    dual = group_option("tracking", "dual")
    mlflow, wandb = group_option("tracking", "mlflow"), group_option("tracking", "wandb")
    assert dual["callbacks"] == {**mlflow["callbacks"], **wandb["callbacks"]}
    with pytest.raises(ConfigError) as caught:
        group_option("tracking", "paper")
    assert caught.value.key == "tracking" and "use one of dual, mlflow, none, wandb" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("n_trialz=3", None, "n_trialz: not a key of the config (did you mean n_trials?)"),
        ("n_trials=many", "n_trials", "could not be converted"),
        ("n_trials=1,2", WHERE, "give key=value, one value"),
        ("~report", WHERE, "give key=value, one value"),
        ("model=hf", WHERE, "the trials run the app"),
        ("n_trials=[", WHERE, ""),
    ],
)
def test_a_bad_override_is_one_line_naming_its_key(override: str, key: str | None,
                                                   fragment: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        apply_overrides(_config(), [override], WHERE)
    assert caught.value.key == key and fragment in str(caught.value)
    assert "\n" not in str(caught.value)
