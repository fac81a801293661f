"""Text that comes back from a trial is hostile: a study whose trials print, log and fail with
every kind of secret leaves none of them in the console or in any file of the run, the study
database, MLflow, W&B or Ray (its experiment state and its worker logs)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from attack_support import files_containing

from ugro_hpo.objectives.base import Objective


@pytest.mark.slow
@pytest.mark.integration
def test_a_trial_s_error_text_leaks_no_secret_anywhere(tmp_path: Path) -> None:
    planted = {
        "after_label": "lbl-" + secrets.token_hex(8),  # known to nobody but the trial
        "from_env": "env-" + secrets.token_hex(8),
        "from_dotenv": "dot-" + secrets.token_hex(8),
        "from_hf_token": "hft-" + secrets.token_hex(8),
        "from_config": "cfg-" + secrets.token_hex(8),
    }
    markers = Path(os.environ["UGRO_TEST_MARKERS"])
    (markers / "planted.json").write_text(json.dumps(planted))
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f"SERVICE_PART={planted['from_dotenv']}\n")
    ray_tmp = Path(tempfile.mkdtemp(prefix="r"))  # short: Ray's socket paths have a length limit
    env = {**os.environ, "MY_SERVICE_PASSWORD": planted["from_env"], "RAY_TMPDIR": str(ray_tmp),
           "WANDB_MODE": "offline", "HF_TOKEN": planted["from_hf_token"]}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ugro_hpo", "objective=custom", "objective.fn=fixture_objectives:leaks_secrets",
             "search_space=quadratic", "tracking=dual", "wandb.project=attack", "n_trials=2", "max_steps=1",
             "eval_every=1", "scheduler=fifo", "max_consecutive_failures=2", "verbose=1", "report=false",
             f"+tags.api_token={planted['from_config']}"],
            cwd=work, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        values = list(planted.values())
        console = result.stdout + result.stderr
        assert result.returncode == 3, console[-3000:]  # every trial failed: the study stopped
        assert "login failed: password=***" in console  # the stop reason, scrubbed
        assert [v[:4] for v in values if v in console] == []
        outputs = work / "outputs"
        for store in ("studies.db", "mlflow.db", "wandb", "ray"):
            assert (outputs / store).exists(), store
        assert files_containing(outputs, values) == []
        worker_logs = list(ray_tmp.glob("**/logs/worker-*"))
        assert worker_logs and files_containing(ray_tmp, values) == []
        assert any(b"retrying with" in p.read_bytes() for p in worker_logs)  # the logs were read
        errors = (next(outputs.glob("ugro-demo/*/trials.csv"))).read_text()
        assert "login failed: password=***" in errors
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
        (markers / "planted.json").unlink(missing_ok=True)


HOW = ["sys_exit", "keyboard_interrupt", "base_exception", "descriptor", "subprocess",
       "metric_name", "long_line"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_a_trial_says_a_secret_every_way_and_none_of_it_is_anywhere(tmp_path: Path) -> None:
    """One trial per way a trial can say something (tests/fixtures/hostile_trials.py): the
    message of sys.exit(...), KeyboardInterrupt and another BaseException, writes to the file
    descriptors 1 and 2 and a subprocess's output, a metric name, a 100,000-character line.
    None of the secret is in the console, any file of the run, the study database, or Ray's
    session logs and error files; every other character of the long line arrives."""
    secret = "tok-" + secrets.token_hex(10)
    work = tmp_path / "work"
    work.mkdir()
    space = work / "space.yaml"
    space.write_text(f"parameters: {{how: {{type: categorical, choices: {HOW}}}}}\n"
                     "objectives: [{name: value}]\n")  # fmt: skip
    ray_tmp = Path(tempfile.mkdtemp(prefix="r"))
    env = {**os.environ, "UGRO_TEST_SECRET_TOKEN": secret, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ugro_hpo", "objective=custom", "objective.fn=hostile_trials:says_a_secret",
             f"search_space_file={space}", "search=grid", f"n_trials={len(HOW)}", "parallel_jobs=1",
             "max_steps=2", "eval_every=1", "scheduler=fifo", "tracking=none", "report=false", "verbose=1",
             "study_name=hostile"],
            cwd=work, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        console = result.stdout + result.stderr
        assert result.returncode == 0, console[-3000:]
        assert secret not in console and secret[4:] not in console
        outputs = work / "outputs"
        assert (outputs / "studies.db").exists() and (outputs / "ray").exists()
        assert files_containing(outputs, [secret, secret[4:]]) == []
        session_files = [p for p in ray_tmp.rglob("*") if p.is_file() and not p.is_symlink()]
        assert any(p.name.startswith("worker-") for p in session_files)
        assert files_containing(ray_tmp, [secret, secret[4:]]) == []
        worker_text = b"".join(p.read_bytes() for p in ray_tmp.rglob("worker-*") if p.is_file())
        for said in (b"fd1 says ***", b"fd2 says '***'", b"child says ***", b"child err ***"):
            assert said in worker_text, said  # the logs were read, and each way was taken
        long_line = b"x" * 100_000 + b" tail ***"
        assert long_line in worker_text and b"long line done" in worker_text  # nothing cut
        errors = {row.split(",")[2]: row for row in
                  (next(outputs.glob("hostile/*/trials.csv"))).read_text().splitlines()[1:]}  # fmt: skip
        assert "SystemExit: giving up: ***" in errors["sys_exit"]
        assert "KeyboardInterrupt: stopped by ***" in errors["keyboard_interrupt"]
        assert "Planted: '***'" in errors["base_exception"]
        assert "metric name" in errors["metric_name"] and "holds a secret" in errors["metric_name"]
        assert ",complete," in errors["descriptor"] and ",complete," in errors["long_line"]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


# -- inside the trial: what reaches Ray ------------------------------------------------------


class _Planted(BaseException):
    pass


class _Raising(Objective):
    def __init__(self, make: Any) -> None:
        self.make = make

    def __call__(self, params: Any, report: Any, context: Any) -> Any:
        report(1, value=1.0)
        raise self.make()


def _run(
    objective: Objective, monkeypatch: pytest.MonkeyPatch, stop: bool = False
) -> list[dict[str, Any]]:
    """run_trial in this process; what it hands Ray's tune.report is returned (``stop``: the
    first report is answered as Ray answers when the scheduler stops a trial)."""
    from ray import tune

    from ugro_hpo.execution import trainable
    from ugro_hpo.security.digests import SecretDigests

    reported: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any]) -> None:
        reported.append(metrics)
        if stop:
            raise SystemExit(0)

    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(trainable, "_scrub_output", lambda digests: None)
    spec = {"objective": objective, "metrics": ["value"], "seed": 0, "max_steps": 2, "eval_every": 1,
            "resources": {"cpu": 1, "gpu": 0}, "run_dir": ".", "metadata": {}, "trial_timeout_s": None,
            "secret_digests": SecretDigests.of_known()}  # fmt: skip
    trainable.run_trial({}, spec)
    return reported


RAISED = {
    "sys.exit with a message": lambda s: SystemExit(f"giving up: {s}"),
    "sys.exit with a number and a message": lambda s: SystemExit(f"{s}"),
    "KeyboardInterrupt": lambda s: KeyboardInterrupt(f"stopped by {s}"),
    "a BaseException of its own": lambda s: _Planted(repr(s)),
    "GeneratorExit": lambda s: GeneratorExit(s),
    "an exception whose message is huge": lambda s: ValueError("x" * 1_999_990 + s + " tail"),
    "an exception cut just inside its secret": lambda s: ValueError("y" * 1_990 + s),
}


@pytest.mark.parametrize("case", sorted(RAISED))
def test_whatever_a_trial_raises_reaches_ray_scrubbed_as_a_failed_trial(
    monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    from ugro_hpo.security.redaction import register

    secret = "rx-" + secrets.token_hex(10)
    register(secret)
    reported = _run(_Raising(lambda: RAISED[case](secret)), monkeypatch)  # nothing propagates
    final = reported[-1]
    assert final["ugro_state"] == "failed"
    assert secret not in json.dumps(reported) and secret[3:9] not in final["ugro_error"]
    assert len(final["ugro_error"]) <= 2000


def test_ray_s_own_stop_still_ends_the_trial_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    class Catching(Objective):
        def __call__(self, params: Any, report: Any, context: Any) -> Any:
            try:
                report(1, value=1.0)
            finally:
                raise SystemExit("a message of the objective's, said while Ray stops it")

    with pytest.raises(SystemExit) as info:
        _run(Catching(), monkeypatch, stop=True)
    assert info.value.code == 0  # Ray's graceful stop: no error, no text of the trial


@pytest.mark.parametrize("where", ["a report", "the final result"])
def test_a_metric_name_holding_a_secret_is_never_reported(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from ugro_hpo.security.redaction import register

    secret = "mx" + secrets.token_hex(10)
    register(secret)

    class Naming(Objective):
        def __call__(self, params: Any, report: Any, context: Any) -> Any:
            if where == "a report":
                report(1, value=1.0, **{f"loss_{secret}": 1.0})
            return {"value": 1.0, f"acc/{secret}": 0.5}

    reported = _run(Naming(), monkeypatch)
    assert secret not in json.dumps(reported)
    assert reported[-1]["ugro_state"] == "failed" and "holds a secret" in reported[-1]["ugro_error"]
