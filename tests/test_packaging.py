"""Packaging: pixi.toml mirrors pyproject.toml, and a built wheel works from anywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

# pyproject (PyPI) name -> pixi (conda-forge) name
CONDA_NAMES = {"ray": "ray-tune", "torch": "pytorch-cpu"}


def _requirements(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", item.strip())
        assert match, item
        out[match[1].lower()] = match[3].replace(" ", "")
    return out


def test_pixi_manifest_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pixi = tomllib.loads((REPO / "pixi.toml").read_text())
    runtime = _requirements(project["dependencies"])
    conda = {**pixi["dependencies"], **pixi["feature"]["cpu"]["dependencies"]}
    for name, spec in runtime.items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"{name} missing from pixi.toml"
        assert conda[conda_name].replace(" ", "") == spec, (
            f"{name}: {spec} vs pixi {conda[conda_name]}"
        )
    assert pixi["feature"]["cuda"]["dependencies"]["pytorch-gpu"] == runtime["torch"]
    dev = _requirements(project["optional-dependencies"]["dev"])
    dev.pop("ugro-hpo")  # the dev extra pulls in the wandb extra
    test_deps = pixi["feature"]["test"]["dependencies"]
    assert {k: v.replace(" ", "") for k, v in test_deps.items()} == dev
    wandb = _requirements(project["optional-dependencies"]["wandb"])
    assert conda["wandb"] == wandb["wandb"]  # pixi environments always include W&B ...
    postgres = _requirements(project["optional-dependencies"]["postgres"])
    assert conda["psycopg"] == postgres["psycopg"]  # ... and the PostgreSQL driver
    quant = _requirements(project["optional-dependencies"]["quant"])
    assert pixi["feature"]["cuda"]["dependencies"]["bitsandbytes"] == quant["bitsandbytes"]
    python = pixi["dependencies"]["python"]
    assert python.startswith(project["requires-python"])
    assert set(pixi["tasks"]) >= {"demo", "test"}


def test_readme_starts_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    first_block = text.split("```", 2)[1]
    assert "scripts/demo" in first_block and "scripts/test" in first_block
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_a_built_wheel_runs_from_an_unrelated_directory(tmp_path: Path) -> None:
    """Build the wheel, install it without dependencies into a fresh venv that borrows this
    environment's packages (for speed), and compose the config from elsewhere."""
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if (
        build.returncode != 0
        and "hatchling" in build.stderr
        and "No matching distribution" in build.stderr
    ):
        pytest.skip("the hatchling build backend cannot be downloaded here")
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(dist.glob("ugro_hpo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()  # Hydra finds the sweeper in a namespace package
    assert "hydra_plugins/ugro_hpo_sweeper/ugro_hpo_sweeper.py" in names
    assert "hydra_plugins/__init__.py" not in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    # Borrow hydra, optuna, ... from this environment; ugro_hpo itself must come from the wheel.
    deps = sysconfig.get_paths()["purelib"]
    (Path(site) / "borrowed.pth").write_text(deps + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = subprocess.run([str(python), "-m", "ugro_hpo", "--cfg", "job", "search=random"], cwd=elsewhere,
                           capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "_target_: optuna.samplers.RandomSampler" in shown.stdout
    where = subprocess.run([str(python), "-c", "import ugro_hpo, pathlib; print(pathlib.Path(ugro_hpo.__file__).parent)"],
                           cwd=elsewhere, capture_output=True, text=True, env=env, check=True).stdout.strip()  # fmt: skip
    assert where.startswith(str(env_dir)), where
    assert (Path(where) / "conf" / "config.yaml").is_file()
