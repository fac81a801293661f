"""The process policy: how a command exits, the collector at exit, environment defaults, the
standard streams, the file-creation mask, and work done on a thread meanwhile. What happens at a
process's end is watched in a child process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from ugro_hpo import process_policy as policy
from ugro_hpo.process_policy import Ahead, import_quietly

TEARDOWN_PROBE = """
import atexit, gc, sys
sys.path.insert(0, {repo!r})
from ugro_hpo import process_policy as policy

class Loud:
    def __del__(self):
        sys.stdout.write("torn down\\n")
        sys.stdout.flush()

def garbage():  # a cycle only a collection finds
    a, b = Loud(), Loud()
    a.b, b.a = b, a

kept = Loud()  # dropped by Python's teardown of __main__
gc.disable()
garbage()

def main():
    atexit.register(lambda: print("handler ran", flush=True))
    {body}
"""


def _child(body: str, end: str) -> subprocess.CompletedProcess[str]:
    code = TEARDOWN_PROBE.format(repo=str(REPO), body=body) + textwrap.dedent(end)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_a_command_exits_with_its_code_after_its_exit_handlers_and_without_teardown() -> None:
    plain = _child("raise SystemExit(3)", "main()\n")
    assert plain.returncode == 3 and "torn down" in plain.stdout  # the probe sees a teardown
    fast = _child("raise SystemExit(3)", "policy.exit_without_teardown(main)\n")
    assert fast.returncode == 3
    assert fast.stdout.splitlines() == ["handler ran"]  # handlers ran, no teardown after them
    done = _child("print('done')", "policy.exit_without_teardown(main)\n")
    assert (done.returncode, done.stdout.splitlines()) == (0, ["done", "handler ran"])


def test_an_unexpected_error_exits_as_python_does() -> None:
    crashed = _child("raise RuntimeError('boom')", "policy.exit_without_teardown(main)\n")
    assert crashed.returncode == 1
    assert "RuntimeError: boom" in crashed.stderr and "torn down" in crashed.stdout


def test_the_collector_skips_its_exit_time_search_once_told() -> None:
    plain = _child("pass", "main()\n")
    assert plain.stdout.count("torn down") == 3  # the cycle's two and the kept one
    frozen = _child("pass", "policy.skip_collection_at_exit()\nmain()\n")
    assert frozen.stdout.count("torn down") == 0  # what lives at exit is left to the system


def test_environment_defaults_never_override_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(policy.HANDOVER_ENV, "7")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    policy.set_defaults(policy.TRIAL_WORKER_ENV)
    policy.set_defaults(policy.MLFLOW_CLIENT_ENV)
    assert os.environ[policy.HANDOVER_ENV] == "7"
    assert (
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]
        == policy.MLFLOW_CLIENT_ENV["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    )


def test_swapped_streams_are_flushed_and_put_back_whatever_happens() -> None:
    from ugro_hpo.security.redaction import register

    secret = "policy-probe-secret-7f3a9c"
    register(secret)
    before = sys.stdout, sys.stderr
    out = io.StringIO()
    # entered left to right: the redacting streams wrap the swapped-in ones
    with (
        pytest.raises(ValueError),
        policy.swapped_streams(out, io.StringIO()),
        policy.redacted_streams(),
    ):
        print(f"token {secret} without a line end", end="")
        raise ValueError("the block failed")
    assert (sys.stdout, sys.stderr) == before
    assert out.getvalue().startswith("token ") and secret not in out.getvalue()
    assert out.getvalue().endswith("without a line end")  # the held partial line was flushed


def test_the_file_creation_mask_is_read_without_being_left_changed() -> None:
    expected = os.umask(0o077)
    os.umask(expected)
    assert policy.umask() == expected
    assert os.umask(expected) == expected


def test_work_ahead_hands_over_its_result_or_its_error() -> None:
    assert Ahead(lambda: 41 + 1).result() == 42

    def fails() -> None:
        raise ValueError("storage: cannot open it")

    with pytest.raises(ValueError, match="cannot open"):
        Ahead(fails).result()


def test_imports_ahead_imports_the_shared_packages_before_its_thread_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "policy_first.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[bool] = []
    policy.imports_ahead(lambda: seen.append("policy_first" in sys.modules),
                         first=["policy_first"]).result()  # fmt: skip
    assert seen == [True] and all(name in sys.modules for name in policy.IMPORTED_FIRST)
    monkeypatch.delitem(sys.modules, "policy_first")


def test_quiet_imports_go_on_past_a_module_that_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ahead_broken.py").write_text("raise ImportError('broken on purpose')\n")
    (tmp_path / "ahead_good.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_quietly("ahead_broken", "ahead_good")
    assert "ahead_good" in sys.modules and "ahead_broken" not in sys.modules
    monkeypatch.delitem(sys.modules, "ahead_good")


AHEAD_PROBE = """
import importlib, json, logging, sys, threading
sys.path.insert(0, {repo!r})
import optuna, hydra, omegaconf  # what a study's driver has loaded before Ray starts
from ugro_hpo.pipeline import GP_LIBRARIES, LOADED_WHILE_RAY_STARTS
from ugro_hpo.process_policy import imports_ahead, import_quietly

MAIN = threading.get_ident()
overlapping = threading.Event()  # set while the thread imports
seen = {{}}
class Recorder:  # the packages each thread looks modules up in (the main one while overlapping)
    def find_spec(self, name, path=None, target=None):
        if threading.get_ident() != MAIN or overlapping.is_set():
            seen.setdefault(name.split(".")[0], set()).add(threading.get_ident())
sys.meta_path.insert(0, Recorder())
later = LOADED_WHILE_RAY_STARTS + GP_LIBRARIES + ("matplotlib", "matplotlib.figure")

def work():
    overlapping.set()
    try:
        import_quietly(*later)
    finally:
        overlapping.clear()

ahead = imports_ahead(work, first=["ugro_hpo.execution.ray_compat"])
import ray
ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.WARNING,
         log_to_driver=False)
ahead.result()
ray.shutdown()
print(json.dumps(sorted(n for n, threads in seen.items() if len(threads) > 1)))
"""


@pytest.mark.slow
def test_no_package_is_imported_from_two_threads_while_ray_starts() -> None:
    """An import hook records the thread of every module lookup while a local Ray starts and
    the study's later modules are imported ahead (as `pipeline.run` does it)."""
    done = subprocess.run([sys.executable, "-c", AHEAD_PROBE.format(repo=str(REPO))],
                          capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]"


RELEASE_PROBE = """
import importlib, json, logging, sys, tempfile, threading
sys.path.insert(0, {repo!r})
import optuna, ray
from ugro_hpo.process_policy import Ahead, import_quietly
ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.WARNING,
         log_to_driver=False)
ray.get(ray.remote(lambda: 1).remote())
seen = {{}}
class Recorder:  # the packages each thread looks modules up in
    def find_spec(self, name, path=None, target=None):
        seen.setdefault(name.split(".")[0], set()).add(threading.get_ident())
sys.meta_path.insert(0, Recorder())
released = Ahead(ray.shutdown)
for name in ("ugro_hpo.results.summary", "ugro_hpo.results.writers", "ugro_hpo.results.report",
             "ugro_hpo.results.importances"):
    importlib.import_module(name)
from ugro_hpo.results.plots import figure
with tempfile.TemporaryDirectory() as out:
    fig = figure(4, 3)
    fig.add_subplot().plot([1, 2, 3])
    fig.savefig(out + "/plot.png")
released.result()
print(json.dumps(sorted(n for n, threads in seen.items() if len(threads) > 1)))
"""


@pytest.mark.slow
def test_ray_stops_on_a_thread_that_imports_nothing_the_study_end_imports() -> None:
    """An import hook records the thread of every module lookup while Ray stops on a thread
    and the main thread writes a study's end (its modules, a plot), as `pipeline.run` does."""
    done = subprocess.run([sys.executable, "-c", RELEASE_PROBE.format(repo=str(REPO))],
                          capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_trials_run_at_the_priority_of_the_command_that_started_the_study(study) -> None:
    """The session's Ray starts as a study's own local Ray does (`RAY_DRIVER_ENV`)."""
    result = study("search_space=quadratic", "objective=custom", "tracking=none", "n_trials=1",
                   "objective.fn=fixture_objectives:says_its_niceness")  # fmt: skip
    assert [r.metrics["niceness"] for r in result.records] == [float(os.nice(0))]
