"""Tracking against real backends: an `mlflow server` on loopback and W&B's offline run files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import run_cli
from servers import MlflowServer, free_port
from wandb_records import read_runs

pytestmark = pytest.mark.integration

SPACE = """
parameters:
  x1: {type: float, min: 0.0, max: 1.0, default: 0.1}
  x2: {type: float, min: 0.0, max: 1.0, default: 0.5}
constraints: ["x1 >= 0.2"]
objectives: [{name: value}]
metadata: {function: quadratic}
"""
"""The defaults violate the constraint, so trial 0 is infeasible in every study."""


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def overrides(space_file: Path, study_name: str, **extra: str) -> list[str]:
    base = {
        "objective": "synthetic", "search_space_file": str(space_file), "study_name": study_name,
        "n_trials": "6", "max_steps": "5", "eval_every": "1", "scheduler": "fifo",
    }  # fmt: skip
    return [f"{k}={v}" for k, v in {**base, **extra}.items()]


def mlflow_runs(uri: str, experiment: str, study_name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`ugro.study_name` = '{study_name}'",
        max_results=1000,
    )
    parents = [r for r in runs if r.data.tags.get("ugro.role") == "study"]
    children = [r for r in runs if r.data.tags.get("ugro.role") == "trial"]
    return client, parents, children


@pytest.mark.slow
def test_mlflow_server_gets_one_parent_and_one_nested_run_per_trial(
    study, mlflow_server, space_file
) -> None:
    result = study(*overrides(space_file, "ml-study"), "tracking=mlflow", "report=true",
                   f"mlflow.tracking_uri={mlflow_server.uri}", "mlflow.experiment_name=ugro-tests")  # fmt: skip
    client, parents, children = mlflow_runs(mlflow_server.uri, "ugro-tests", "ml-study")
    counts = result.summary["counts"]
    assert len(parents) == 1 and len(children) == 6 + counts["infeasible"]  # 6 trials ran
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.data.tags["ugro.sampler"] == "optuna.samplers.GPSampler"  # auto: constraints too
    assert parent.data.tags["ugro.scheduler"] == "ray.tune.schedulers.FIFOScheduler"
    assert parent.data.params["max_steps"] == "5" and parent.data.params["n_trials"] == "6"
    assert parent.data.params["function"] == "quadratic"
    assert "best_value" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.json", "best_params.yaml", "trials.csv", "report"} <= artifacts
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/index.html", "report/optimization_history.png"} <= report

    by_number = {int(c.data.tags["ugro.trial_number"]): c for c in children}
    assert sorted(by_number) == [r.number for r in result.records]  # 6 ran, and the infeasible
    stored = {
        t.number: t
        for t in optuna.load_study(study_name="ml-study", storage=result.plan.storage).trials
    }
    for number, child in by_number.items():
        ray_id = stored[number].user_attrs.get("ray_trial_id", f"infeasible-{number}")
        assert child.data.tags["ugro.trial_id"] == ray_id
        assert child.data.tags["ugro.state"] == result.records[number].state
        assert set(child.data.params) == {"x1", "x2"}
    infeasible = by_number[0]
    assert infeasible.data.tags["ugro.state"] == "infeasible"
    assert infeasible.data.tags["ugro.violated_constraint"] == "x1 >= 0.2"
    assert infeasible.data.metrics["constraint_violation"] == 1.0
    complete = next(c for n, c in by_number.items() if result.records[n].state == "complete")
    history = client.get_metric_history(complete.info.run_id, "value")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3, 4, 5]
    assert complete.info.status == "FINISHED" and parent.info.status == "FINISHED"
    assert result.summary["tracking"]["mlflow"]["ok"] is True


@pytest.mark.slow
def test_wandb_offline_writes_one_run_per_trial(study, space_file, tmp_path: Path) -> None:
    result = study(
        *overrides(space_file, "wb-study"),
        "tracking=wandb",
        "wandb.project=ugro-tests",
        "wandb.mode=offline",
        "report=true",
    )
    runs = read_runs(tmp_path / "outputs" / "wandb")
    assert len(runs) == 6 + result.summary["counts"]["infeasible"]  # infeasible ones never ran
    stored = {
        t.number: t
        for t in optuna.load_study(study_name="wb-study", storage=result.plan.storage).trials
    }
    by_number = {r.config["trial_number"]: r for r in runs}
    for number, run in by_number.items():
        assert (
            run.project == "ugro-tests"
            and run.group == "wb-study"
            and run.name == f"trial-{number}"
        )
        ray_id = stored[number].user_attrs.get("ray_trial_id", f"infeasible-{number}")
        assert f"trial_id-{ray_id}" in run.tags
        assert {"x1", "x2", "function", "max_steps", "study_name"} <= set(run.config)
        assert run.exit_code == 0
    infeasible = by_number[0]
    assert "constraint_violation" in infeasible.tags
    assert infeasible.summary["violated_constraint"] == "x1 >= 0.2"
    assert any(row.get("constraint_violation") == 1.0 for row in infeasible.history)
    complete = next(r for n, r in by_number.items() if result.records[n].state == "complete")
    assert [row["value"] for row in complete.history if "value" in row][-1] == pytest.approx(
        result.records[complete.config["trial_number"]].values["value"]
    )
    assert result.summary["tracking"]["wandb"]["location"].startswith("ugro-tests (offline")
    (study_run,) = read_runs(tmp_path / "outputs" / "wandb", job_type="study")
    assert study_run.group == "wb-study" and study_run.exit_code == 0
    assert study_run.summary["trials_complete"] == result.summary["counts"]["complete"]
    assert {"importance/value/x1", "importance/value/x2"} <= set(study_run.summary)
    logged = {key for row in study_run.history for key in row}
    assert logged >= {"report/optimization_history/_type", "report/slices/_type"}  # W&B images
    assert study_run.artifacts == [("report-wb-study", "report")]


@pytest.mark.slow
def test_dual_tracking_logs_both_with_cross_references(
    study, mlflow_server, space_file, tmp_path: Path
) -> None:
    result = study(*overrides(space_file, "dual-study"), "tracking=dual", f"mlflow.tracking_uri={mlflow_server.uri}",
                   "mlflow.experiment_name=ugro-tests", "wandb.project=ugro-tests", "wandb.mode=offline")  # fmt: skip
    _, parents, children = mlflow_runs(mlflow_server.uri, "ugro-tests", "dual-study")
    runs = read_runs(tmp_path / "outputs" / "wandb")
    ran_or_infeasible = 6 + result.summary["counts"]["infeasible"]
    assert len(parents) == 1 and len(children) == len(runs) == ran_or_infeasible
    by_wandb = {r.run_id: r for r in runs}
    for child in children:
        wandb_run = by_wandb[child.data.tags["ugro.wandb_run_id"]]
        assert wandb_run.config["mlflow_run_id"] == child.info.run_id
        assert wandb_run.config["trial_number"] == int(child.data.tags["ugro.trial_number"])


@pytest.mark.slow
def test_every_step_of_a_pruned_trial_reaches_the_study_mlflow_and_wandb(
    study, mlflow_server, space_file, tmp_path: Path
) -> None:
    """The step at which ASHA stops a trial is given by Ray Tune to the searcher's ending only;
    it must still be a step like the others, everywhere."""
    result = study(*overrides(space_file, "pruned-steps", n_trials="12", max_steps="8",
                              scheduler="asha"), "tracking=dual",
                   f"mlflow.tracking_uri={mlflow_server.uri}", "mlflow.experiment_name=ugro-tests",
                   "wandb.project=ugro-tests", "wandb.mode=offline")  # fmt: skip
    pruned = [r for r in result.records if r.state == "pruned"]
    assert pruned, "ASHA stopped no trial of 12"
    client, _, children = mlflow_runs(mlflow_server.uri, "ugro-tests", "pruned-steps")
    mlflow_by_number = {int(c.data.tags["ugro.trial_number"]): c for c in children}
    wandb_by_number = {
        r.config["trial_number"]: r for r in read_runs(tmp_path / "outputs" / "wandb")
    }
    stored = optuna.load_study(study_name="pruned-steps", storage=result.plan.storage).trials
    for record in pruned:
        k = record.last_step
        assert k is not None and 1 <= k < 8
        steps = list(range(1, k + 1))  # eval_every=1: a report at every step
        assert sorted(stored[record.number].intermediate_values) == steps
        history = client.get_metric_history(mlflow_by_number[record.number].info.run_id, "value")
        assert sorted(m.step for m in history) == steps
        rows = [row for row in wandb_by_number[record.number].history if "value" in row]
        assert [row["_step"] for row in rows] == steps


@pytest.mark.slow
def test_continuing_a_study_reuses_its_parent_and_logs_each_trial_once(
    study, mlflow_server, space_file
) -> None:
    args = [*overrides(space_file, "continued"), "tracking=mlflow", f"mlflow.tracking_uri={mlflow_server.uri}",
            "mlflow.experiment_name=ugro-tests"]  # fmt: skip
    study(*args, "n_trials=3")
    result = study(*args, "n_trials=6")
    _, parents, children = mlflow_runs(mlflow_server.uri, "ugro-tests", "continued")
    assert len(parents) == 1
    numbers = sorted(int(c.data.tags["ugro.trial_number"]) for c in children)
    assert numbers == [r.number for r in result.records]  # each trial once, infeasible ones too
    assert parents[0].data.tags.get("ugro.changed.n_trials") == "6"


def _finished_trials(storage_path: Path) -> int:
    try:
        with sqlite3.connect(storage_path) as db:
            return db.execute(
                "select count(*) from trials where state in ('COMPLETE', 'PRUNED')"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_tracking_server_dying_mid_study_loses_nothing(study, space_file, tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "dying-server")
    storage = tmp_path / "outputs" / "studies.db"

    def kill_after_two() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and _finished_trials(storage) < 2:
            time.sleep(0.1)
        server.stop()

    killer = threading.Thread(target=kill_after_two, daemon=True)
    killer.start()
    try:
        result = study(*overrides(space_file, "dying", n_trials="8", **{"objective.sleep_s": "0.2"}), "tracking=mlflow",
                       f"mlflow.tracking_uri={server.uri}", "mlflow.experiment_name=ugro-tests")  # fmt: skip
    finally:
        killer.join(timeout=60)
        server.stop()
    assert result.summary["finished"] == 8 and result.summary["status"] == "complete"
    assert len(result.records) == 8 + result.summary["counts"]["infeasible"]  # never ran
    rows = (result.run_dir / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(result.records)
    status = json.loads((result.run_dir / "summary.json").read_text())["tracking"]["mlflow"]
    assert status["ok"] is False and status["failures"] >= 1 and status["errors"]
    assert status["trials_not_logged"]


@pytest.mark.slow
def test_an_unreachable_tracker_fails_fast_before_the_study(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        "objective=synthetic",
        "search_space=quadratic",
        f"mlflow.tracking_uri={dead}",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("ugro_hpo: error:")]
    assert (
        len(lines) == 1
        and "mlflow: cannot reach" in lines[0]
        and "tracking.required=false" in lines[0]
    )
    assert not (tmp_path / "outputs" / "studies.db").exists()


@pytest.mark.slow
def test_an_optional_tracker_that_is_unreachable_is_skipped(study, space_file) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = study(*overrides(space_file, "optional", n_trials="2"), "tracking=mlflow", f"mlflow.tracking_uri={dead}",
                   "tracking.required=false")  # fmt: skip
    assert result.summary["finished"] == 2
    assert result.summary["tracking"]["mlflow"]["ok"] is False


def test_wandb_settings_without_a_wandb_tracker_are_an_error(tmp_path: Path) -> None:
    result = run_cli("tracking=mlflow", "wandb.project=x", "dry_run=true", cwd=tmp_path)
    assert result.returncode == 2
    assert "does not log to W&B; use tracking=wandb or tracking=dual" in result.stderr


def test_tracking_with_wandb_absent_names_the_extra(tmp_path: Path) -> None:
    probe = "import sys, runpy; sys.modules['wandb'] = None; sys.argv = ['ugro_hpo', *sys.argv[1:]]; runpy.run_module('ugro_hpo', run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", probe, "tracking=wandb", "wandb.project=p", "dry_run=true"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'ugro-hpo[wandb]'" in result.stderr


@pytest.mark.slow
def test_mlflow_default_store_is_sqlite_beside_the_study(study, space_file, tmp_path: Path) -> None:
    result = study(*overrides(space_file, "local", n_trials="2"), "tracking=mlflow")
    assert (tmp_path / "outputs" / "mlflow.db").is_file()
    assert (
        result.summary["tracking"]["mlflow"]["location"]
        == f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    )
    assert list((tmp_path / "outputs" / "mlartifacts").rglob("summary.json"))


@pytest.mark.slow
def test_wandb_runs_of_failed_trials_are_finished_as_failed(study, tmp_path: Path) -> None:
    result = study("search_space=quadratic", "objective=custom", "objective.fn=fixture_objectives:always_fails",
                   "tracking=wandb", "wandb.project=ugro-tests", "wandb.mode=offline", "n_trials=2",
                   "max_consecutive_failures=2")  # fmt: skip
    runs = read_runs(tmp_path / "outputs" / "wandb")
    assert result.status == "stopped" and 2 <= len(runs) <= result.summary["counts"]["failed"]
    assert all(r.exit_code == 1 and r.summary["state"] == "failed" for r in runs)
    assert sum("boom" in r.summary["error"] for r in runs) >= 2


@pytest.mark.slow
def test_every_wandb_run_is_finished_under_multirun(tmp_path: Path, ray_address: str) -> None:
    result = run_cli("-m", "objective=synthetic", "search_space=quadratic", "search=tpe,random", "n_trials=3",
                     "max_steps=3", "eval_every=1", "tracking=wandb", "wandb.project=ugro-tests",
                     "wandb.mode=offline", f"ray.address={ray_address}", "study_name=wbmulti", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_runs(tmp_path / "outputs" / "wandb")
    assert len(runs) == 6
    assert {r.group for r in runs} == {"wbmulti-search-tpe", "wbmulti-search-random"}
    assert all(r.exit_code is not None for r in runs)
    assert "wandb sync" in result.stdout


@pytest.mark.slow
def test_each_trial_s_last_step_and_rung_reach_mlflow_and_wandb(
    study, mlflow_server, space_file, tmp_path: Path
) -> None:
    result = study(*overrides(space_file, "rungs-tracked", n_trials="8", max_steps="8",
                              scheduler="asha"), "tracking=dual", "scheduler.grace_period=1",
                   "scheduler.reduction_factor=2",
                   f"mlflow.tracking_uri={mlflow_server.uri}", "mlflow.experiment_name=ugro-tests",
                   "wandb.project=ugro-tests", "wandb.mode=offline")  # fmt: skip
    rung_of = {1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 4, 8: 8}  # rungs 1, 2, 4, 8
    _, _, children = mlflow_runs(mlflow_server.uri, "ugro-tests", "rungs-tracked")
    mlflow_by_number = {int(c.data.tags["ugro.trial_number"]): c for c in children}
    wandb_by_number = {
        r.config["trial_number"]: r for r in read_runs(tmp_path / "outputs" / "wandb")
    }
    ran = [r for r in result.records if r.state in ("complete", "pruned")]
    assert ran
    for record in ran:
        tags = mlflow_by_number[record.number].data.tags
        assert tags["ugro.last_step"] == str(record.last_step)
        assert tags["ugro.rung"] == str(rung_of[record.last_step])
        summary = wandb_by_number[record.number].summary
        assert (summary["last_step"], summary["rung"]) == (
            record.last_step,
            rung_of[record.last_step],
        )
