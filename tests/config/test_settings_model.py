"""Every config key's default is written once: the settings model for the top-level keys, our
components' constructors for their groups' keys, and nothing else restates them."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_plugins.ugro_hpo_sweeper.config import UgroHpoSweeperConf
from ugro_hpo.config import conf_dir
from ugro_hpo.config.component_defaults import GROUPS, constructor_defaults
from ugro_hpo.config.schema import GROUPS as SETTINGS_GROUPS
from ugro_hpo.config.schema import AppSettings, RaySettings, ResourcesSettings, default, keys
from ugro_hpo.security import stored_objective

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "ugro_hpo").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")])
TOP_LEVEL = {f.name for f in dataclasses.fields(AppSettings)} - set(SETTINGS_GROUPS)
LEAVES = {name.rsplit(".", 1)[-1] for name, _ in keys()}


def test_config_yaml_sets_no_key_of_the_settings_model() -> None:
    data = yaml.safe_load((conf_dir() / "config.yaml").read_text())
    assert sorted(set(data) & TOP_LEVEL) == []
    assert set(data) <= {"defaults", "hydra"}


def test_every_key_of_the_model_has_a_default_and_a_doc() -> None:
    for name, f in keys():
        assert f.metadata.get("doc"), name
        default(name)  # raises KeyError when it has none


def _fallbacks(tree: ast.AST) -> list[str]:
    """``x.get("n_trials", 20)`` and ``x.get("n_trials") or 20`` for a key of the model."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            # A trial's resource mapping, as Ray hands it over, leaves out what it was not
            # given: an absent "gpu" is none, a fact of the mapping, not a config default.
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "resources")
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in LEAVES
            # None and "" are "not given" (a file read back, a label), not a default.
            and not (isinstance(node.args[1], ast.Constant) and node.args[1].value in (None, ""))
        ):
            found.append(f"{node.args[0].value} (line {node.lineno})")
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            first, *rest = node.values
            if (
                isinstance(first, ast.Call)
                and isinstance(first.func, ast.Attribute)
                and first.func.attr == "get"
                and first.args
                and isinstance(first.args[0], ast.Constant)
                and first.args[0].value in LEAVES
                and any(isinstance(v, ast.Constant) and v.value for v in rest)
            ):
                found.append(f"{first.args[0].value} (line {node.lineno})")
    return found


def test_the_scan_finds_a_fallback_default() -> None:
    planted = 'n = s.get("n_trials", 20)\nr = data.get("progress_interval_s") or 25.0\n'
    assert [f.split()[0] for f in _fallbacks(ast.parse(planted))] == [
        "n_trials",
        "progress_interval_s",
    ]
    assert _fallbacks(ast.parse('x = s.get("n_trials")\ny = s.get("custom_key", 3)')) == []


def test_no_module_restates_a_default_as_a_fallback() -> None:
    found = {}
    for path in SOURCES:
        if path.name == "schema.py":
            continue
        hits = _fallbacks(ast.parse(path.read_text()))
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert found == {}


def _options() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for group in (*GROUPS, "search", "scheduler", "tracking"):
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            data = yaml.safe_load(path.read_text()) or {}
            if str(data.get("_target_", "")).startswith("ugro_hpo."):
                found.append((path, data))
    return found


@pytest.mark.parametrize(
    "path_and_data", _options(), ids=lambda o: f"{o[0].parent.name}/{o[0].stem}"
)
def test_a_group_option_states_only_what_differs_from_the_constructor(
    path_and_data: tuple[Path, dict[str, Any]],
) -> None:
    path, data = path_and_data
    defaults = constructor_defaults(data["_target_"])
    same = sorted(k for k, v in data.items() if k in defaults and defaults[k] == v)
    assert same == [], f"{path.name} restates the constructor's defaults of {same}"


def test_the_options_of_the_light_groups_take_the_constructors_defaults(compose: Any) -> None:
    cfg = compose("dataset=chat", "model=tiny_llama")
    assert (
        cfg.model.pretrain_batch_size
        == inspect.signature(importlib.import_module("ugro_hpo.lora.models").TinyLlama)
        .parameters["pretrain_batch_size"]
        .default
    )
    assert cfg.dataset.loss_on == "completion"  # from SftSource, through ChatSource's **kwargs
    from ugro_hpo.lora.training import Hyperparameters

    assert dict(cfg.objective.fixed) == {
        f.name: f.default for f in dataclasses.fields(Hyperparameters)
    }
    # Overridable without a `+`, as when the option listed them.
    assert compose("model.pretrain_batch_size=4").model.pretrain_batch_size == 4


def test_the_sweeper_shares_the_app_s_sections_and_defaults() -> None:
    by_name = {f.name: f for f in dataclasses.fields(UgroHpoSweeperConf)}
    assert by_name["ray"].default_factory is RaySettings
    assert by_name["resources"].default_factory is ResourcesSettings
    assert ResourcesSettings().gpu == "auto"
    for key in ("resume", "report"):
        assert by_name[key].default == default(key)
    # ... taken from the model, not written again: `resume: bool = default("resume")`.
    source = (ROOT / "hydra_plugins" / "ugro_hpo_sweeper" / "config.py").read_text()
    tree = ast.parse(source)
    (conf,) = [
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "UgroHpoSweeperConf"
    ]
    for node in conf.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") in TOP_LEVEL - {
            # The Optuna sweeper's own keys keep its defaults (a drop-in), under its names.
            "n_trials", "storage", "study_name", "search_space", "search_space_file", "max_steps",
        }:  # fmt: skip
            assert isinstance(node.value, ast.Call), f"{node.target.id} writes its own default"


def test_progress_has_no_interval_of_its_own() -> None:
    from ugro_hpo.execution.progress import Progress

    parameter = inspect.signature(Progress).parameters["interval_s"]
    assert parameter.default is inspect.Parameter.empty


def _accepted(cls: type) -> set[str]:
    """Every argument ``cls`` takes, following ``**kwargs`` to its bases."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names - {"self"}


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        (name, allowed)
        for table in (
            stored_objective.MODELS,
            stored_objective.DATASETS,
            stored_objective.OBJECTIVES,
        )
        for name, allowed in table.items()
        if name != stored_objective.HYDRA_JOB  # never rebuilt from storage
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_stored_objective_allow_list_matches_the_constructors(name: str, allowed: Any) -> None:
    cls = getattr(importlib.import_module(allowed.module), allowed.attribute)
    assert set(allowed.args) == _accepted(cls)
