"""A custom objective that is a local file reaches the nodes of a cluster the study joins.

The cluster is a Ray head started here in a process group of its own (its own temp dir, an
environment without the objective's folder), stopped by that group, never by `ray stop`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

OBJECTIVE = """
import hashlib, json, os, time
from pathlib import Path

def fn(params, report):
    marks = Path(os.environ["SHIP_TEST_MARKS"])  # only ray.runtime_env.env_vars sets it
    (marks / f"{os.getpid()}-{time.time_ns()}.json").write_text(
        json.dumps({"file": __file__, "cwd": os.getcwd(),
                    "token": hashlib.sha256(os.environ["SHIP_TEST_TOKEN"].encode()).hexdigest()}))
    value = (params["x1"] - 0.5) ** 2 + (params["x2"] - 0.5) ** 2
    report(1, value=value)
    return {"value": value}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}


def _bare_env() -> dict[str, str]:
    """The tests' environment without their import path (which holds their objectives)."""
    drop = ("PYTHONPATH", "RAY_ADDRESS")
    return {k: v for k, v in os.environ.items() if k not in drop} | AUTH


@pytest.fixture(scope="module")
def bare_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray head whose workers cannot import anything of the tests' folders."""
    port = _free_port()
    home = tmp_path_factory.mktemp("head")
    temp_dir = tempfile.mkdtemp(prefix="ray-ship-")  # short: Ray's socket paths have a limit
    env = _bare_env()
    ray = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--include-dashboard=false", "--num-cpus=2", "--block", "--disable-usage-stats",
         f"--temp-dir={temp_dir}"],
        cwd=home, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not _listening(port):
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, "the Ray head did not listen within 180 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("found_through", ["working directory", "PYTHONPATH"])
def test_a_local_objective_runs_on_a_cluster_without_it(
    bare_head: str, tmp_path: Path, found_through: str
) -> None:
    """Without shipping, the PYTHONPATH case fails every trial (the workers cannot import
    ``mymod``) and the working-directory case imports the driver's file (the same machine's
    path, which a real node would not have)."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "mymod.py").write_text(OBJECTIVE)
    marks = tmp_path / "marks"
    marks.mkdir()
    cwd = app if found_through == "working directory" else tmp_path
    token = "tok_" + os.urandom(12).hex()  # a secret-named variable, forwarded to the trials
    env = _bare_env() | {"SHIP_TEST_TOKEN": token}
    if found_through == "PYTHONPATH":
        env["PYTHONPATH"] = str(app)
    result = subprocess.run(
        [sys.executable, "-m", "ugro_hpo", "search_space=quadratic", "objective=custom",
         "objective.fn=mymod:fn", "tracking=none", "n_trials=3", "parallel_jobs=1",
         "max_steps=1", "eval_every=1", "scheduler=fifo", "report=false",
         f"outputs_dir={app / 'outputs'}", f"ray.address={bare_head}",
         f"+ray.runtime_env.env_vars.SHIP_TEST_MARKS={marks}",
         "+ray.runtime_env.env_vars.SHIP_TEST_TOKEN=${oc.env:SHIP_TEST_TOKEN}"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(next((app / "outputs").glob("*/*/summary.json")).read_text())
    assert summary["counts"]["complete"] == 3, summary["counts"]
    seen = [json.loads(p.read_text()) for p in marks.iterdir()]
    assert len(seen) == 3  # every trial had the variable from ray.runtime_env.env_vars
    for trial in seen:
        imported = Path(trial["file"])
        assert imported != app / "mymod.py"  # a copy Ray unpacked on the node, not ours
        assert imported.parent == Path(trial["cwd"])  # the shipped folder is the working dir
        assert not (imported.parent / "outputs").exists()  # the outputs folder stays here
        assert trial["token"] == hashlib.sha256(token.encode()).hexdigest()
    # The trials had the secret; nothing the study wrote (its database included) has it.
    assert token not in result.stdout + result.stderr
    for path in (app / "outputs").rglob("*"):
        assert not path.is_file() or token.encode() not in path.read_bytes(), path


APP = """
import json, os, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
import helper_for_app  # a module beside the app: the nodes have it only if it is shipped


@hydra.main(version_base=None, config_path=".", config_name="app")
def app(cfg):
    marks = Path(os.environ["SHIP_TEST_MARKS"])
    sources = [s.path for s in HydraConfig.get().runtime.config_sources if s.schema == "file"]
    (marks / f"{os.getpid()}-{time.time_ns()}.json").write_text(
        json.dumps({"file": helper_for_app.__file__, "cwd": os.getcwd(), "sources": sources}))
    return helper_for_app.square(cfg.x)


if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
def test_the_sweepers_app_folder_is_shipped_to_a_cluster(bare_head: str, tmp_path: Path) -> None:
    """The app's own modules, its config folder and its working directory come from the
    shipped folder on the nodes (without shipping they would be the driver's folder, which
    only this machine has)."""
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "app.py").write_text(APP)
    (folder / "app.yaml").write_text("x: 1.0\n")
    (folder / "helper_for_app.py").write_text("def square(x):\n    return x * x\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    result = subprocess.run(
        [sys.executable, str(folder / "app.py"), "-m", "hydra/sweeper=ugro_hpo",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweeper.n_trials=2",
         "hydra.sweeper.n_jobs=1", "x=interval(-1.0, 1.0)",
         f"hydra.sweeper.ray.address={bare_head}",
         f"+hydra.sweeper.ray.runtime_env.env_vars.SHIP_TEST_MARKS={marks}"],
        cwd=folder, env=_bare_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [json.loads(p.read_text()) for p in marks.iterdir()]
    assert len(seen) == 2
    for trial in seen:
        assert Path(trial["file"]) != folder / "helper_for_app.py"
        assert Path(trial["file"]).name == "helper_for_app.py"
        copy = Path(trial["file"]).parent
        assert Path(trial["cwd"]) == copy
        assert [Path(s) for s in trial["sources"]] == [copy], trial["sources"]


def test_a_runtime_env_ray_refuses_is_one_line_and_nothing_written(tmp_path: Path) -> None:
    """Here Ray refuses a driver's variable that the Ray job it runs in sets otherwise."""
    from conftest import QUICK, run_cli

    job = {"runtime_env": {"env_vars": {"SHIP_TEST_FLAG": "1"}}, "metadata": {}}
    result = run_cli(
        *QUICK, f"outputs_dir={tmp_path / 'outputs'}", "+ray.runtime_env.env_vars.SHIP_TEST_FLAG=2",
        cwd=tmp_path, env={"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(job)}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ugro_hpo: error: ray.runtime_env: Ray refused it (Failed to merge")
    assert not (tmp_path / "outputs").exists()
