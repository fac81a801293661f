"""The sweeper with real Hydra apps run as a user runs them (`python app.py -m ...`), their
trials on the session's Ray: a drop-in for the Optuna sweeper's config, early stopping through
ugro_hpo.report, two objectives, crash and rerun, and one-line errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import stored_trials_while_running

from ugro_hpo.optimize.protocol import RAN, outcome_of

pytestmark = pytest.mark.integration
APPS = Path(__file__).resolve().parents[1] / "fixtures" / "hydra_apps"


def sweep_command(app: str, sweep_dir: Path, ray_address: str, *overrides: str) -> list[str]:
    return [sys.executable, str(APPS / f"{app}.py"), "-m", f"hydra.sweep.dir={sweep_dir}",
            f"hydra.sweeper.ray.address={ray_address}", *overrides]  # fmt: skip


def run_sweep(
    app: str, tmp_path: Path, ray_address: str, *overrides: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sweep_command(app, tmp_path / "sweep", ray_address, *overrides),
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def trial_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "trials.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_an_app_configured_for_the_optuna_sweeper_runs_by_changing_its_name(
    tmp_path: Path, ray_address: str
) -> None:
    result = run_sweep("sphere", tmp_path, ray_address, "hydra/sweeper=ugro_hpo", "fail_at=-5.5",
                       "hydra.sweeper.report=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results) == {"name", "best_params", "best_value"}
    assert set(results["best_params"]) == {"x", "y"}
    best = results["best_params"]
    assert results["best_value"] == pytest.approx(best["x"] ** 2 + best["y"] ** 2)
    rows = trial_rows(sweep)
    assert sum(r["state"] in ("complete", "pruned") for r in rows) == 6
    # Each trial was a real Hydra job: its own directory (named by its trial number) with
    # .hydra/ holding its overrides, HydraConfig set, and (version_base=None) run inside it.
    for row in rows:
        if row["state"] != "complete":
            continue
        job_dir = sweep / row["number"]
        seen = json.loads((job_dir / "job.json").read_text())
        assert seen["num"] == int(row["number"]) and Path(seen["cwd"]) == job_dir
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
        assert f"x={float(row['x'])}" in overrides or f"x={row['x']}" in overrides
        assert any(o.startswith("y=") for o in overrides)
    # The app's exception failed that trial with its text, and the sweep went on.
    failed = [r for r in rows if r["state"] == "failed"]
    assert all("x=-5.5 is the value this app refuses" in r["error"] for r in failed)
    assert (sweep / "multirun.yaml").is_file() and (sweep / "summary.json").is_file()


@pytest.mark.slow
def test_report_lets_asha_stop_poor_trials_early(tmp_path: Path, ray_address: str) -> None:
    result = run_sweep("curves", tmp_path, ray_address, "hydra.sweeper.scheduler=asha",
                       "hydra/sweeper/sampler=random")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = (tmp_path / "steps.log").read_text().split("\n")
    ran = [line for line in steps if line]
    rows = trial_rows(tmp_path / "sweep")
    assert sum(r["state"] in ("complete", "pruned") for r in rows) == 8
    assert any(r["state"] == "pruned" for r in rows)
    assert len(ran) < 8 * 8  # fewer steps than every trial running to the end
    assert len(ran) == sum(int(r["last_step"]) for r in rows)  # the steps counted are the app's


@pytest.mark.slow
def test_a_list_return_with_two_directions_is_a_two_objective_study(
    tmp_path: Path, ray_address: str
) -> None:
    result = run_sweep("curves", tmp_path, ray_address, "two_objectives=true",
                       "hydra.sweeper.direction=[minimize,minimize]", "hydra.sweeper.metric=[loss,spend]",
                       "cost=interval(0, 10)", "hydra.sweeper.n_trials=6",
                       "hydra/sweeper/sampler=nsgaii")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    solutions = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    front = solutions["solutions"]
    assert front and all(len(s["values"]) == 2 and set(s["params"]) == {"quality", "cost"}
                         for s in front)  # fmt: skip
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [o["name"] for o in summary["objectives"]] == ["loss", "spend"]
    assert len(summary["pareto_front"]) == len(front)


@pytest.mark.slow
def test_custom_search_space_adds_parameters_as_the_optuna_sweeper_does(
    tmp_path: Path, ray_address: str
) -> None:
    env_path = os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        sweep_command("curves", tmp_path / "sweep", ray_address, "hydra.sweeper.n_trials=3",
                      "hydra.sweeper.custom_search_space=curves.configure"),
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": env_path},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(
        study_name="curves", storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and all(set(t.params) == {"quality", "cost"} for t in done)
    for trial in done:  # each job ran with the extra parameter as an override
        overrides = yaml.safe_load(
            (tmp_path / "sweep" / str(trial.number) / ".hydra" / "overrides.yaml").read_text()
        )
        assert f"cost={trial.params['cost']}" in overrides


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["hydra.sweeper.params.quality='interval(0,'"], "hydra.sweeper.params: cannot parse"),
        (["hydra.sweeper.direction=upwards"], "hydra.sweeper.direction"),
        (["hydra.sweeper.scheduler=fastest"], "hydra.sweeper.scheduler"),
        (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials:"),
        (["hydra.sweeper.grace_period=99"], "hydra.sweeper.grace_period: 99 is larger"),
        (
            ["hydra.sweeper.custom_search_space=nowhere.configure"],
            "hydra.sweeper.custom_search_space",
        ),
    ],
)
def test_mistakes_in_the_sweeper_s_input_are_one_line_before_any_trial(
    tmp_path: Path, overrides: Sequence[str], fragment: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(APPS / "curves.py"), "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
         *overrides], cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "steps.log").exists()  # no trial ran


@pytest.mark.slow
def test_killing_the_sweep_and_rerunning_it_finishes_the_same_study(
    tmp_path: Path, ray_address: str
) -> None:
    db = tmp_path / "sweeps.db"
    args = sweep_command("curves", tmp_path / "sweep", ray_address, f"hydra.sweeper.storage=sqlite:///{db}",
                         "sleep_s=0.3", "hydra.sweeper.n_trials=8")  # fmt: skip
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 180
        while _ran(db) < 2:
            assert time.time() < deadline, "no trial finished"
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    assert _ran(db) < 8
    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _ran(db) == 8
    study = optuna.load_study(study_name="curves", storage=f"sqlite:///{db}")
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def _ran(db: Path) -> int:
    return sum(outcome_of(t) in RAN for t in stored_trials_while_running(db, "curves"))
