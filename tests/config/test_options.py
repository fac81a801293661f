"""Every option of every config group composes, and every `_target_` binds to its target."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from hydra._internal.utils import _locate
from omegaconf import OmegaConf

from ugro_hpo.config import conf_dir

GROUPS = sorted(p.name for p in conf_dir().iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((conf_dir() / g).glob("*.yaml"))]
_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def _targets(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "_target_" in node:
            yield path or "<root>", node
        for key, value in node.items():
            yield from _targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _targets(value, f"{path}[{index}]")


def test_every_group_has_options() -> None:
    assert {
        "model",
        "dataset",
        "search_space",
        "objective",
        "search",
        "scheduler",
        "tracking",
    } <= set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_its_targets_bind(compose, group: str, option: str) -> None:
    override = f"+experiment={option}" if group == "experiment" else f"{group}={option}"
    cfg = compose(override)
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    section = data if group == "experiment" else data[group]
    targets = list(_targets(section))
    assert targets or (group, option) in {("search_space", option), ("tracking", "none")}, option
    for _where, spec in targets:
        target = _locate(spec["_target_"])
        kwargs = {k: v for k, v in spec.items() if k not in _HYDRA_KEYS}
        signature = inspect.signature(target)
        binder = signature.bind_partial if spec.get("_partial_") else signature.bind
        binder(**kwargs)  # raises TypeError naming the unexpected or missing argument


def test_schema_rejects_a_wrong_type(compose) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose("n_trials=many")


def test_schema_rejects_an_unknown_key(compose) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose("n_trial=3")


def test_defaults_are_the_documented_ones(compose) -> None:
    from hydra.core.hydra_config import HydraConfig  # noqa: F401  (compose without Hydra's runtime)

    cfg = compose()
    assert cfg.objective._target_.endswith("LoraObjective")
    assert cfg.search._target_ == "ugro_hpo.optimize.samplers.auto_sampler"
    assert cfg.scheduler._target_ == "ugro_hpo.execution.schedulers.auto_scheduler"  # ASHA, or FIFO
    assert cfg.scheduler.reduction_factor == 2  # asha.yaml's settings
    assert cfg.storage.endswith("/studies.db")


@pytest.mark.parametrize(
    ("overrides", "eval_every"),
    [((), 10), (("max_steps=1",), 1), (("max_steps=5",), 1), (("max_steps=300",), 50),
     (("max_steps=100", "eval_every=7"), 7), (("+experiment=synthetic_branin",), 1)],
)  # fmt: skip
def test_eval_every_follows_max_steps_unless_it_is_set(
    compose, tmp_path, overrides: tuple[str, ...], eval_every: int
) -> None:
    from ugro_hpo.config.plan import build_plan

    plan = build_plan(compose(*overrides), tmp_path / "run")
    assert plan.eval_every == eval_every
    assert plan.scheduler["grace_period"] == eval_every  # ASHA's first rung follows it too


def test_eval_every_set_above_max_steps_is_still_one_line(compose, tmp_path) -> None:
    from ugro_hpo.config.plan import build_plan
    from ugro_hpo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^eval_every: 9 is larger than max_steps \(5\)$"):
        build_plan(compose("max_steps=5", "eval_every=9"), tmp_path / "run")


def test_search_auto_picks_a_gp_for_small_numeric_spaces_and_tpe_otherwise(compose) -> None:
    import optuna

    from ugro_hpo.config.plan import build_plan, build_sampler

    def chosen(*overrides: str):
        plan = build_plan(compose(*overrides), "unused")
        return plan.sampler_name, build_sampler(plan).current(optuna.create_study())

    for space in ("branin", "quadratic"):  # quadratic has a constraint: the GP models it too
        name, sampler = chosen("objective=synthetic", f"search_space={space}")
        assert name == "optuna.samplers.GPSampler" and isinstance(
            sampler, optuna.samplers.GPSampler
        )
    for overrides in ((), ("search_space=lora_conditional",)):  # a categorical; conditions
        name, sampler = chosen(*overrides)
        assert name == "optuna.samplers.TPESampler" and sampler._constant_liar


def test_a_multirun_job_s_study_is_named_after_what_the_job_varies() -> None:
    from ugro_hpo.names import check_path_name, job_study_name

    varying = {"search", "lr"}
    assert job_study_name("demo", ["search=tpe", "n_trials=4"], varying, 0) == "demo-search-tpe"
    assert job_study_name("demo", ["+lr=1e-3", "search=random"], varying, 1) == (
        "demo-lr-1e-3-search-random"
    )
    assert job_study_name("demo", ["n_trials=4"], varying, 2) == "demo-2"  # nothing varies
    odd = job_study_name("demo", ["search=../../x y"], varying, 3)
    assert check_path_name(odd, "study_name") == odd and "/" not in odd
    assert job_study_name("demo", ["search=" + "t" * 200], varying, 4) == "demo-4"
