"""One rule per shared value: a whole number reads the same wherever it is given (the config, a
LoRA hyperparameter, a dataset option, a stored study), and the search space accepts exactly the
metric names a trial may report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import yaml

from ugro_hpo.errors import ConfigError, SearchSpaceError
from ugro_hpo.execution.trial_runner import TrialFailed, checked_metrics
from ugro_hpo.lora.training import Hyperparameters
from ugro_hpo.space import parse_search_space
from ugro_hpo.validation import finite_number, stored_whole_number, whole_number


def _space(objective: str) -> Any:
    raw = {"parameters": {"x": {"type": "float", "min": 0, "max": 1}},
           "objectives": [{"name": objective}]}  # fmt: skip
    return parse_search_space(yaml.safe_load(yaml.safe_dump(raw)), "test")


@pytest.mark.parametrize("name", ["eval-loss", "eval.loss", "val/acc", "eval_loss", "top 1"])
def test_every_name_a_trial_may_report_can_be_an_objective(name: str) -> None:
    assert checked_metrics({name: 0.5}, (name,), "in the final result") == {name: 0.5}
    assert _space(name).metric_names == [name]


@pytest.mark.parametrize(
    "name", ["verlust_ä", "\uff4c\uff4f\uff53\uff53", "_" * 251, "-loss", "a\tb"]
)
def test_a_name_no_trial_may_report_is_no_objective(name: str) -> None:
    with pytest.raises(TrialFailed, match="is not allowed"):
        checked_metrics({name: 0.5}, (), "in the final result")
    with pytest.raises(SearchSpaceError, match="objective name must be a metric name"):
        _space(name)


def test_a_lora_hyperparameter_is_a_whole_number_as_the_config_s_are() -> None:
    hp = Hyperparameters.from_values({"lora_r": 8.0, "batch_size": np.int64(4)})
    assert (hp.lora_r, hp.batch_size) == (8, 4) and type(hp.batch_size) is int
    for bad in ("8", 2.5, True, 0):
        with pytest.raises(ConfigError, match=r"^lora_r: must be a whole number >= 1, got "):
            Hyperparameters.from_values({"lora_r": bad})


def test_whole_numbers_from_the_config_and_from_a_stored_study() -> None:
    assert whole_number(3, "n_trials", 1) == 3
    with pytest.raises(ConfigError, match=r"^seed: must be a whole number <= 9, got 10$"):
        whole_number(10, "seed", 0, 9)
    with pytest.raises(
        ConfigError, match=r"^dataset.k: must be a whole number >= 1 or null, got 0$"
    ):
        whole_number(0, "dataset.k", 1, hint=" or null")
    with pytest.raises(ConfigError) as caught:
        stored_whole_number(10**8, "study 's'", "max_steps", 1)
    assert str(caught.value) == (
        "study 's': stored max_steps '100000000' is not a whole number between 1 and "
        "10,000,000; the study database may have been altered"
    )


def test_a_finite_number_is_a_real_number_that_is_not_nan_inf_or_a_bool() -> None:
    assert finite_number(np.float32(0.5)) == 0.5 and finite_number(3) == 3.0
    for bad in (math.nan, math.inf, -math.inf, True, "1", None):
        assert finite_number(bad) is None
