"""The sweeper as a drop-in for Hydra's Optuna sweeper, with real Hydra apps run as a user runs
them (`python app.py -m hydra/sweeper=ugro_hpo ...`), their trials on the session's Ray: the
documented examples of the Optuna sweeper (sphere with its own config, several objectives, a
custom search space, a grid, the failure rate, sampler overrides), early stopping through
ugro_hpo.report, crash and rerun, and how a sweep ends (exit codes, one-line errors)."""

from __future__ import annotations

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
from sweeps import APPS, error_lines, run_sweep, sweep_command, trial_rows

from ugro_hpo.optimize.protocol import RAN, outcome_of

pytestmark = pytest.mark.integration
OFFICIAL_KEYS = {"name", "best_params", "best_value"}


def test_the_documented_sphere_command_runs_unchanged_under_our_name(
    tmp_path: Path, ray_address: str
) -> None:
    """`python sphere.py -m` with the sphere example's own config (20 trials one at a time,
    TPE seeded 123, max_failure_rate 0.0), only the sweeper's name changed."""
    result = run_sweep("sphere", tmp_path, ray_address, "hydra/sweeper=ugro_hpo",
                       "hydra.sweeper.report=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results) == OFFICIAL_KEYS and results["name"] == "optuna"
    study = optuna.load_study(study_name="sphere", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert results["best_params"] == study.best_trial.params
    assert results["best_value"] == study.best_trial.value
    assert len(study.trials) == 20 and all(t.state.name == "COMPLETE" for t in study.trials)
    for trial in study.trials:  # the example's grid, its end excluded (the 1.4 line)
        assert -5.5 <= trial.params["x"] <= 5.0 and (trial.params["x"] * 2).is_integer()
        assert trial.params["y"] in (-5, 0, 5)
        # each trial was a real Hydra job: its own directory, its id and num the trial number
        job_dir = sweep / str(trial.number)
        seen = json.loads((job_dir / "job.json").read_text())
        assert seen["num"] == trial.number and seen["id"] == str(trial.number)
        assert Path(seen["cwd"]) == job_dir  # version_base 1.1: the job runs in its directory
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
        assert f"x={trial.params['x']}" in overrides and f"y={trial.params['y']}" in overrides
        # the app's print is on the sweep's console, with the trial's number
        assert f"[trial {trial.number}] hello from trial {trial.number}" in result.stdout
    assert "alembic" not in result.stdout + result.stderr
    # stderr holds Hydra's own warnings about version_base 1.1, as under any sweeper
    assert "Traceback" not in result.stderr and "error" not in result.stderr.lower()
    assert "Best value:" in result.stdout


@pytest.mark.slow
def test_the_last_trial_s_long_output_is_all_on_the_console_when_the_sweep_ends(
    tmp_path: Path,
) -> None:
    """Ray ships a worker's lines to the driver on its own time: a sweep whose last trial
    prints a lot, just before it ends, still shows every line of it, in order (the driver
    waits for each trial's end of output, a line it never prints). The sweep's own Ray reads
    the workers' logs a line at a time (Ray's setting), so that the lines are late."""
    lines = 2000
    result = run_sweep("sphere", tmp_path, None, "hydra/sweeper=ugro_hpo",
                       "hydra.sweeper.report=false", "hydra.sweeper.n_trials=2",
                       f"chatter={lines}", env={"RAY_LOG_MONITOR_NUM_LINES_TO_READ": "1"},
                       timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for number in (0, 1):
        prefix = f"[trial {number}] "
        echoed = [line for line in result.stdout.splitlines() if line.startswith(prefix)]
        said = [line[len(prefix) :] for line in echoed if "of trial" in line]
        assert said == [f"line {i} of trial {number}" for i in range(lines)], said[-3:]
    assert "ends here" not in result.stdout + result.stderr


def test_trials_that_fail_end_the_sweep_with_their_error_as_max_failure_rate_says(
    tmp_path: Path, ray_address: str
) -> None:
    """The example's max_failure_rate (0.0) ends the sweep at the first failure: exit 3 and
    the app's error in one line; no results file, as the Optuna sweeper writes none then."""
    result = run_sweep("sphere", tmp_path, ray_address, "hydra/sweeper=ugro_hpo", "error=true",
                       "hydra.sweeper.report=false", "hydra.sweeper.n_jobs=2")  # fmt: skip
    assert result.returncode == 3, result.stderr[-3000:]
    (line,) = error_lines(result.stderr)[-1:]
    assert line.startswith("ugro_hpo sweeper: error: hydra.sweeper.max_failure_rate=0 exceeded")
    assert "RuntimeError: cfg.error is True" in line
    # the failed job's own error, as Hydra logs it, reached the console before the sweep ended
    assert "] Error executing job with overrides:" in result.stdout + result.stderr
    assert not (tmp_path / "sweep" / "optimization_results.yaml").exists()
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["counts"]["failed"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nsgaii", "nsgaiii", "random"])
def test_the_multi_objective_example_gives_a_pareto_front(
    tmp_path: Path, ray_address: str, sampler: str
) -> None:
    result = run_sweep("binh_korn", tmp_path, ray_address, "hydra/sweeper=ugro_hpo",
                       f"hydra/sweeper/sampler={sampler}", "x=range(0, 5)", "y=range(0, 3)",
                       "hydra.sweeper.report=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(results) == {"name", "solutions"} and results["name"] == "optuna"
    front = results["solutions"]
    assert front
    for a in front:
        assert isinstance(a["params"]["x"], int) and isinstance(a["params"]["y"], int)
        for b in front:  # no solution dominates another
            assert not (all(x <= y for x, y in zip(b["values"], a["values"], strict=True))
                        and b["values"] != a["values"])  # fmt: skip


@pytest.mark.slow
def test_the_custom_search_space_example_adds_parameters_and_keeps_their_plus(
    tmp_path: Path, ray_address: str
) -> None:
    result = run_sweep("near_x", tmp_path, ray_address, "hydra/sweeper=ugro_hpo",
                       "hydra/sweeper/sampler=random", "max_z_difference_from_x=0.3",
                       "hydra.sweeper.report=false", "hydra.job.chdir=True")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = results["best_params"]
    assert set(best) == {"x", "y", "z", "+w"}
    assert abs(best["x"] - best["z"]) <= 0.3 + 1e-9 and 0 <= best["+w"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize(("n_trials", "ran"), [(20, 8), (1, 1)])
def test_the_grid_example_runs_every_point_once(
    tmp_path: Path, ray_address: str, n_trials: int, ran: int
) -> None:
    result = run_sweep("sphere:sphere_grid", tmp_path, ray_address, "hydra/sweeper=ugro_hpo", f"hydra.sweeper.n_trials={n_trials}",
                       "hydra.sweeper.report=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trial_rows(tmp_path / "sweep")
    points = {(r["x"], r["y"], r["z"]) for r in rows if r["state"] == "complete"}
    assert len(points) == ran == len([r for r in rows if r["state"] == "complete"])
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_params"]["x"] in (-1, 1) and best["best_params"]["y"] in (-1.0, 0.0)
    if n_trials >= 8:
        assert best["best_value"] == 1


@pytest.mark.slow
def test_sampler_options_int_intervals_plus_keys_and_no_parameters(
    tmp_path: Path, ray_address: str
) -> None:
    """`hydra/sweeper/sampler=cmaes hydra.sweeper.sampler.popsize=4`, an int(interval(...)), a
    +key: integers sampled, the + kept in best_params so it can be passed back."""
    result = run_sweep("sphere", tmp_path, ray_address, "hydra/sweeper=ugro_hpo",
                       "hydra/sweeper/sampler=cmaes", "hydra.sweeper.sampler.popsize=4",
                       "x=int(interval(-5,5))", "+extra=choice(1,2)", "hydra.sweeper.n_trials=6",
                       "hydra.sweeper.report=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"x", "y", "+extra"}
    xs = [r["x"] for r in trial_rows(tmp_path / "sweep")]
    assert xs and all(str(int(x)) == x for x in xs)
    # A sweep without parameters runs its jobs as they are (the Optuna sweeper does too).
    (tmp_path / "bare").mkdir()
    bare = run_sweep("sphere", tmp_path / "bare", ray_address, "hydra/sweeper=ugro_hpo",
                     "hydra.sweeper.params=null", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.report=false")  # fmt: skip
    assert bare.returncode == 0, bare.stderr[-3000:]
    results = yaml.safe_load(
        (tmp_path / "bare" / "sweep" / "optimization_results.yaml").read_text()
    )
    assert results == {"name": "optuna", "best_params": {}, "best_value": 2.0}


@pytest.mark.slow
def test_a_config_pinning_the_optuna_sweeper_class_switches_with_one_more_override(
    tmp_path: Path, ray_address: str
) -> None:
    """lightning-hydra-template's hparams_search pins `hydra.sweeper._target_` to the Optuna
    sweeper's class: the README's switch names ours there too, and the rest runs unchanged."""
    # No -m: the option sets hydra.mode: MULTIRUN itself.
    command = [sys.executable, str(APPS / "template" / "train.py"), "hparams_search=optuna_search",
               "hydra/sweeper=ugro_hpo", f"hydra.sweep.dir={tmp_path / 'sweep'}",
               f"hydra.sweeper.ray.address={ray_address}", "hydra.sweeper.n_trials=3",
               "hydra.sweeper.report=false"]  # fmt: skip
    pinned = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert pinned.returncode != 0 and "hydra_optuna_sweeper" in pinned.stderr
    switched = subprocess.run(
        [*command, "hydra.sweeper._target_=hydra_plugins.ugro_hpo_sweeper.ugro_hpo_sweeper.UgroHpoSweeper"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert switched.returncode == 0, switched.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {
        "model.optimizer.lr",
        "data.batch_size",
        "model.net.width",
    }
    study = optuna.load_study(
        study_name="train", storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    )
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and len(study.trials) == 3


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
def test_a_scheduler_metric_no_trial_reports_is_one_line_naming_what_was_reported(
    tmp_path: Path, ray_address: str
) -> None:
    result = run_sweep("curves", tmp_path, ray_address, "hydra.sweeper.scheduler=asha",
                       "hydra.sweeper.metric=null", "hydra.sweeper.report=false")  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    line = error_lines(result.stderr)[-1]
    assert line.startswith("ugro_hpo sweeper: error: hydra.sweeper.scheduler=asha watches the "
                           "metric 'objective'")  # fmt: skip
    assert "it reported: loss" in line
    # the app heard it too: its report() raised, and the trial failed with the same words
    assert any(
        "watches the metric 'objective'" in r["error"] for r in trial_rows(tmp_path / "sweep")
    )
    assert len((tmp_path / "steps.log").read_text().split()) < 8 * 2 * 8  # nothing ran on


@pytest.mark.slow
def test_a_streak_of_failures_exits_3_even_when_any_failure_rate_is_allowed(
    tmp_path: Path, ray_address: str
) -> None:
    result = run_sweep("sphere", tmp_path, ray_address, "hydra/sweeper=ugro_hpo", "error=true",
                       "hydra.sweeper.max_failure_rate=1.0", "hydra.sweeper.report=false",
                       "hydra.sweeper.overrides=['max_consecutive_failures=3']")  # fmt: skip
    assert result.returncode == 3, result.stderr[-3000:]
    line = error_lines(result.stderr)[-1]
    assert "study stopped: the last 3 trials all failed" in line and "cfg.error is True" in line


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_sweep_with_130_and_keeps_what_finished(
    tmp_path: Path, ray_address: str, signum: int
) -> None:
    db = tmp_path / "sweeps.db"
    args = sweep_command("curves", tmp_path / "sweep", ray_address, f"hydra.sweeper.storage=sqlite:///{db}",
                         "sleep_s=0.3", "hydra.sweeper.n_trials=30", "hydra.sweeper.report=false")  # fmt: skip
    sweep = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 180
        while _ran(db) < 1:
            assert time.time() < deadline and sweep.poll() is None, "no trial finished"
            time.sleep(0.2)
        sweep.send_signal(signum)
        _, stderr = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait(timeout=30)
    assert sweep.returncode == 130, stderr[-3000:]
    assert error_lines(stderr)[-1].startswith("ugro_hpo sweeper: error: interrupted")
    assert 1 <= _ran(db) < 30


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["hydra.sweeper.params.quality='interval(0,'"], "hydra.sweeper.params: cannot parse"),
        (["hydra.sweeper.direction=upwards"], "hydra.sweeper.direction"),
        (["hydra.sweeper.scheduler=fastest"], "hydra.sweeper.scheduler"),
        (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials:"),
        (["hydra.sweeper.grace_period=99"], "hydra.sweeper.grace_period: 99 is larger"),
        (["hydra.sweeper.max_failure_rate=2"], "hydra.sweeper.max_failure_rate: 2"),
        (
            ["hydra.sweeper.params.quality='range(0,10,step=0)'"],
            "a range needs a step other than 0",
        ),
        (["hydra.sweeper.sampler=random"], "choose a sampler with hydra/sweeper/sampler=random"),
        (["hydra/sweeper/sampler=motpe"], "the 'motpe' sampler was removed in Optuna 4.0"),
        (
            ["hydra.sweeper.custom_search_space=nowhere.configure"],
            "hydra.sweeper.custom_search_space",
        ),
    ],
)
def test_mistakes_in_the_sweeper_s_input_are_one_line_before_anything_is_written(
    tmp_path: Path, overrides: Sequence[str], fragment: str
) -> None:
    result = run_sweep("curves", tmp_path, None, *overrides, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr
    assert lines[0].startswith("ugro_hpo sweeper: error: ")
    assert not (tmp_path / "steps.log").exists()  # no trial ran
    assert not (tmp_path / "sweep").exists()  # nothing written


def test_two_directions_with_a_single_metric_scheduler_are_one_line_before_anything_runs(
    tmp_path: Path,
) -> None:
    result = run_sweep("binh_korn", tmp_path, None, "hydra/sweeper=ugro_hpo", "x=range(0, 5)",
                       "y=range(0, 3)", "hydra.sweeper.scheduler=asha", timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("ugro_hpo sweeper: error: hydra.sweeper.scheduler: ")
    assert "stops trials by one metric" in lines[0] and "choose fifo" in lines[0]
    assert not (tmp_path / "sweep").exists()


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
