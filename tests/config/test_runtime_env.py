"""ray.runtime_env: each field checked, secrets only forwarded, local code shipped to a cluster."""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ugro_hpo.config.plan import build_plan
from ugro_hpo.config.runtime_env import RAY_FIELDS, describe_runtime_env
from ugro_hpo.errors import ConfigError
from ugro_hpo.execution.code_shipping import SIZE_LIMIT
from ugro_hpo.security.credentials import check_overrides
from ugro_hpo.security.redaction import redact_data, redact_text

QUICK = ["objective=synthetic", "search_space=quadratic", "tracking=none"]
CLUSTER = "ray.address=127.0.0.1:6379"  # the plan is built without joining it


@pytest.fixture
def local_objective(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module importable only from a folder on sys.path (as the working directory is)."""
    folder = tmp_path / "app"
    folder.mkdir()
    name = f"mymod_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text("def fn(params, report):\n    return {'value': 0.0}\n")
    monkeypatch.syspath_prepend(str(folder))
    return name, folder


def custom(name: str, function: str = "fn") -> list[str]:
    return [
        "objective=custom",
        f"objective.fn={name}:{function}",
        "search_space=quadratic",
        "tracking=none",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ray.runtime_env=5", "ray.runtime_env: must map Ray runtime_env fields"),
        ("+ray.runtime_env.env_var.A=1", "ray.runtime_env.env_var: not a field of Ray's runtime_env"),
        ("+ray.runtime_env.env_vars=[A]", "ray.runtime_env.env_vars: must map variable names"),
        ("+ray.runtime_env.env_vars.A=[1,2]", "ray.runtime_env.env_vars.A: must be a string or a number"),
        ("+ray.runtime_env.working_dir=/no/such/folder", "ray.runtime_env.working_dir: '/no/such/folder' is not a folder"),
        ("+ray.runtime_env.py_modules=/no/such/pkg", "ray.runtime_env.py_modules: must be a list of strings"),
        ("+ray.runtime_env.py_modules=[/no/such/pkg]", "ray.runtime_env.py_modules: '/no/such/pkg' does not exist"),
        ("+ray.runtime_env.pip=numpy", "ray.runtime_env.pip: 'numpy' is no requirements file here"),
        ("+ray.runtime_env.pip={pip_check: false}", "ray.runtime_env.pip: the dict form needs a packages list"),
        ("+ray.runtime_env.excludes=.git", "ray.runtime_env.excludes: must be a list of strings"),
    ],
)  # fmt: skip
def test_a_bad_runtime_env_is_one_line_naming_its_field(
    compose: Callable[..., Any], tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_plan(compose(*QUICK, override), tmp_path / "run")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_good_runtime_env_reaches_the_plan_as_ray_takes_it(
    compose: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "code").mkdir()
    plan = build_plan(compose(*QUICK, "+ray.runtime_env.env_vars.OMP_NUM_THREADS=2",
                              f"+ray.runtime_env.working_dir={tmp_path / 'code'}",
                              "+ray.runtime_env.pip=[numpy]"), tmp_path / "run")  # fmt: skip
    assert plan.ray_runtime_env == {
        "env_vars": {
            "OMP_NUM_THREADS": "2",  # Ray takes strings only
            "UGRO_SHIPPED_FROM": str(tmp_path / "code"),
        },
        "working_dir": str(tmp_path / "code"),
        "pip": ["numpy"],
    }
    assert build_plan(compose(*QUICK), tmp_path / "run").ray_runtime_env is None


def test_our_field_list_is_the_installed_rays() -> None:
    from ray.runtime_env import RuntimeEnv

    assert {f for f in RuntimeEnv.known_fields if not f.startswith("_")} == RAY_FIELDS


def test_a_secret_named_variable_is_forwarded_from_the_environment_only(
    compose: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_" + uuid.uuid4().hex
    with pytest.raises(ConfigError) as caught:
        build_plan(compose(*QUICK, f"+ray.runtime_env.env_vars.HF_TOKEN={secret}"), tmp_path)
    assert "${oc.env:HF_TOKEN}" in str(caught.value) and secret not in str(caught.value)

    monkeypatch.setenv("HF_TOKEN", secret)
    plan = build_plan(compose(*QUICK, "+ray.runtime_env.env_vars.HF_TOKEN=${oc.env:HF_TOKEN}"),
                      tmp_path / "run")  # fmt: skip
    assert plan.ray_runtime_env == {"env_vars": {"HF_TOKEN": secret}}  # the trials get it
    assert secret not in json.dumps(redact_data(plan.config))  # what is written does not
    assert secret not in redact_text(f"a trial printed {secret}")
    assert secret not in repr(plan)


@pytest.mark.parametrize(
    ("argument", "refused"),
    [
        ("+ray.runtime_env.env_vars.HF_TOKEN=hf_abcdefgh", True),
        ("ray.runtime_env.env_vars.WANDB_API_KEY=abcdefgh", True),
        ("hydra.sweeper.ray.runtime_env.env_vars.AWS_SECRET_ACCESS_KEY=abcdefgh", True),
        ("+ray.runtime_env.env_vars.HF_TOKEN=${oc.env:HF_TOKEN}", False),
        ("+ray.runtime_env.env_vars.HF_TOKEN='${oc.env:HF_TOKEN}'", False),
        ("+ray.runtime_env.env_vars.OMP_NUM_THREADS=4", False),
    ],
)
def test_a_secret_typed_on_the_command_line_is_refused_before_hydra_records_it(
    argument: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(ConfigError, match="is refused, as credentials are never read"):
            check_overrides([argument])
    else:
        check_overrides([argument])


def test_joining_a_cluster_ships_the_folder_a_local_objective_comes_from(
    compose: Callable[..., Any], tmp_path: Path, local_objective: tuple[str, Path]
) -> None:
    name, folder = local_objective
    outputs = folder / "outputs"
    plan = build_plan(compose(*custom(name), CLUSTER, f"outputs_dir={outputs}"), tmp_path / "run")
    assert plan.ray_runtime_env is not None
    assert plan.ray_runtime_env["working_dir"] == str(folder)
    assert {".git", ".venv*", "/outputs"} <= set(plan.ray_runtime_env["excludes"])
    # The trials know where their copy of it came from; a dry run does not name that
    # variable (it is ours, not the user's).
    assert plan.ray_runtime_env["env_vars"] == {
        "UGRO_SHIPPED_FROM": str(folder)}  # fmt: skip
    assert describe_runtime_env(plan.ray_runtime_env) == [f"runtime env  working_dir {folder}"]
    # A Ray started here finds the file itself; nothing is shipped.
    assert build_plan(compose(*custom(name)), tmp_path / "run").ray_runtime_env is None


def test_a_given_working_dir_is_kept_and_user_excludes_are_added_to(
    compose: Callable[..., Any], tmp_path: Path, local_objective: tuple[str, Path]
) -> None:
    name, folder = local_objective
    (tmp_path / "mine").mkdir()
    given = build_plan(compose(*custom(name), CLUSTER, f"+ray.runtime_env.working_dir={tmp_path / 'mine'}"),
                       tmp_path / "run").ray_runtime_env  # fmt: skip
    assert given == {"working_dir": str(tmp_path / "mine"), "env_vars": {
        "UGRO_SHIPPED_FROM": str(tmp_path / "mine")}}  # fmt: skip
    extra = build_plan(compose(*custom(name), CLUSTER, "+ray.runtime_env.excludes=[data/]"),
                       tmp_path / "run").ray_runtime_env  # fmt: skip
    assert extra is not None and extra["working_dir"] == str(folder)
    assert extra["excludes"][0] == "data/" and ".git" in extra["excludes"]


@pytest.mark.parametrize("reference", ["json:dumps", "fixture_objectives:quadratic_xy"])
def test_an_installed_module_is_not_shipped(
    compose: Callable[..., Any], tmp_path: Path, reference: str
) -> None:
    """The standard library is an installation; the tests' fixtures folder is on sys.path
    (through PYTHONPATH) and is shipped like any local folder."""
    module = reference.split(":")[0]
    plan = build_plan(compose(*custom(module, reference.split(":")[1]), CLUSTER), tmp_path / "run")
    shipped = (plan.ray_runtime_env or {}).get("working_dir")
    if reference.startswith("json"):
        assert shipped is None
    else:
        assert shipped == str(Path(__file__).resolve().parents[1] / "fixtures")


def test_a_folder_too_large_to_ship_is_one_line_naming_the_key(
    compose: Callable[..., Any], tmp_path: Path, local_objective: tuple[str, Path]
) -> None:
    name, folder = local_objective
    for excluded in (".venv", ".git", "outputs"):  # not counted: never shipped
        (folder / excluded).mkdir()
        with open(folder / excluded / "big.bin", "wb") as f:
            f.truncate(SIZE_LIMIT + 1)  # sparse: costs no disk
    overrides = (*custom(name), CLUSTER, f"outputs_dir={folder / 'outputs'}")
    build_plan(compose(*overrides), tmp_path / "run")
    with open(folder / "data.bin", "wb") as f:
        f.truncate(SIZE_LIMIT + 1)
    with pytest.raises(ConfigError) as caught:
        build_plan(compose(*overrides), tmp_path / "run")
    text = str(caught.value)
    assert text.startswith("ray.runtime_env.working_dir: the folder") and "over 100 MiB" in text
    assert "set ray.runtime_env.working_dir" in text and "\n" not in text


def test_a_ray_job_that_brings_its_own_working_dir_ships_nothing_more(
    compose: Callable[..., Any], tmp_path: Path, local_objective: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Ray refuses a driver's working_dir beside its job's (`ray job submit --working-dir`)."""
    name, _ = local_objective
    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip"}, "metadata": {}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))
    plan = build_plan(compose(*custom(name), "ray.address=auto"), tmp_path / "run")
    assert plan.ray_runtime_env is None
    assert os.environ["RAY_JOB_CONFIG_JSON_ENV_VAR"]


def test_a_hydra_apps_folder_is_its_scripts_or_its_packages_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python app.py` ships the script's folder; `python -m pkg.app` the folder above pkg."""
    import sys
    import types

    from ugro_hpo.execution.code_shipping import local_folder

    package = tmp_path / f"pkg_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    script = types.ModuleType("__main__")
    script.__file__ = str(package / "app.py")
    script.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert local_folder("__main__") == package
    run_as_module = types.ModuleType("__main__")
    run_as_module.__file__ = str(package / "app.py")
    run_as_module.__spec__ = importlib.util.spec_from_file_location(
        f"{package.name}.app", package / "app.py"
    )
    monkeypatch.setitem(sys.modules, "__main__", run_as_module)
    assert local_folder("__main__") == tmp_path


def test_the_dry_run_plan_says_what_is_shipped_and_names_the_variables_only(
    compose: Callable[..., Any], tmp_path: Path, local_objective: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from ugro_hpo.config.plan import describe

    name, folder = local_objective
    secret = "hf_" + uuid.uuid4().hex
    monkeypatch.setenv("HF_TOKEN", secret)
    plan = build_plan(compose(*custom(name), CLUSTER, "+ray.runtime_env.env_vars.HF_TOKEN=${oc.env:HF_TOKEN}",
                              "+ray.runtime_env.env_vars.OMP_NUM_THREADS=2"), tmp_path / "run")  # fmt: skip
    line = describe(plan).splitlines()[-1]
    assert line == f"runtime env  working_dir {folder}; env_vars HF_TOKEN, OMP_NUM_THREADS"
    assert secret not in describe(plan)


def test_a_working_dir_given_as_a_uri_gets_no_folder_of_ours(
    compose: Callable[..., Any], tmp_path: Path
) -> None:
    """A zip in a bucket has no folder on this machine that the trials' paths could lie in."""
    env = build_plan(compose(*QUICK, CLUSTER, "+ray.runtime_env.working_dir=s3://b/code.zip"),
                     tmp_path / "run").ray_runtime_env  # fmt: skip
    assert env == {"working_dir": "s3://b/code.zip"}
