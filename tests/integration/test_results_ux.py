"""What a person sees and keeps: live progress, the report, importances, analysing and exporting
a stored study, and training its best configuration once more."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import FIXTURES, run_cli, stored_trials_while_running

from ugro_hpo.optimize.protocol import RAN, outcome_of

pytestmark = pytest.mark.integration

FAST = ["objective=synthetic", "search_space=branin", "max_steps=3", "eval_every=1", "tracking=none",
        "n_trials=6", "parallel_jobs=2", "scheduler=fifo", "report=false"]  # fmt: skip
SLOW = ["objective=synthetic", "search_space=quadratic", "max_steps=4", "eval_every=1", "objective.sleep_s=0.25",
        "scheduler=fifo", "n_trials=8", "parallel_jobs=2", "tracking=none", "report=false"]  # fmt: skip
PLOTS = {
    "optimization_history",
    "parameter_importances",
    "parallel_coordinates",
    "slices",
    "learning_curves",
}
PROGRESS = re.compile(
    r"(\d+)/(\d+) done \((\d+) complete, (\d+) pruned, (\d+) infeasible\) \| (\d+) running \| (\d+) failed"
)


def summary_of(cwd: Path) -> dict:
    (path,) = cwd.glob("outputs/*/*/summary.json")
    return json.loads(path.read_text())


# -- live progress -----------------------------------------------------------------------------


@pytest.mark.slow
def test_progress_lines_when_output_is_not_a_terminal(tmp_path: Path) -> None:
    result = run_cli(*FAST, "objective.sleep_s=0.1", "progress_interval_s=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "progress: " in line]
    assert len(lines) >= 2 and "\r" not in result.stderr and "\x1b[" not in result.stderr
    done, total, complete, pruned, infeasible, running, failed = map(
        int, PROGRESS.search(lines[-1]).groups()
    )
    counts = summary_of(tmp_path)["counts"]
    assert (done, total, running, failed) == (6, 6, 0, 0)
    assert (complete, pruned, infeasible) == (
        counts["complete"],
        counts["pruned"],
        counts["infeasible"],
    )
    assert "best value" in lines[-1] and "elapsed" in lines[-1]
    assert any("ETA" in line for line in lines[:-1])
    for line in lines:  # counts only grow
        assert int(PROGRESS.search(line)[1]) <= done


@pytest.mark.slow
def test_a_terminal_gets_one_refreshing_line(tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the study, with a terminal as stdout and stderr
        os.chdir(tmp_path)
        os.execv(sys.executable, [sys.executable, "-m", "ugro_hpo", *FAST, "objective.sleep_s=0.2"])
    output = b""
    deadline = time.time() + 240
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    redraws = text.count("\r\x1b[2K")
    assert redraws >= 2, text[-2000:]
    final = text.split("\r\x1b[2K")[-1].splitlines()[0]
    assert PROGRESS.search(final).groups()[:2] == ("6", "6")
    assert "progress: " not in text  # no log lines in a terminal


# -- report and importances --------------------------------------------------------------------


def test_report_plots_page_and_importances(study) -> None:
    result = study("objective=synthetic", "search_space=branin", "max_steps=6", "eval_every=1",
                   "tracking=none", "n_trials=10", "parallel_jobs=2", "scheduler=asha", "report=true")  # fmt: skip
    report = result.run_dir / "report"
    assert {p.stem for p in report.glob("*.png")} == PLOTS  # one objective: no Pareto front
    for png in report.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    page = (report / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(PLOTS) and "<script" not in page
    assert "Pareto front: not drawn, the study has one objective" in page
    importances = json.loads((result.run_dir / "summary.json").read_text())["importances"]
    assert set(importances) == {"value"} and set(importances["value"]) == {"x1", "x2"}
    assert sum(importances["value"].values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_multi_objective_report_draws_the_pareto_front(study) -> None:
    result = study("objective=synthetic", "search_space=binh_korn", "max_steps=1", "eval_every=1",
                   "tracking=none", "n_trials=8", "scheduler=fifo", "report=true")  # fmt: skip
    report = result.run_dir / "report"
    assert (report / "pareto_front.png").is_file()
    importances = result.summary["importances"]
    assert set(importances) == {"f1", "f2"} and all(
        set(v) == {"x1", "x2"} for v in importances.values()
    )


@pytest.mark.slow
def test_conditional_parameters_get_importances_too(study) -> None:
    result = study("objective=custom", "objective.fn=fixture_objectives:conditional_sum",
                   f"search_space_file={FIXTURES / 'conditional.yaml'}", "tracking=none", "n_trials=12",
                   "scheduler=fifo", "report=false")  # fmt: skip
    space_names = {p.name for p in result.plan.search_space.parameters}
    importances = result.summary["importances"]
    (scores,) = importances.values()
    assert set(scores) == space_names


@pytest.mark.skipif(
    not shutil.which("chromium"), reason="no chromium (Debian: apt-get install chromium)"
)
@pytest.mark.slow
def test_the_report_page_opens_in_headless_chromium_without_console_errors(
    study, tmp_path: Path
) -> None:
    result = study("objective=synthetic", "search_space=branin", "max_steps=4", "eval_every=1",
                   "tracking=none", "n_trials=6", "scheduler=fifo", "report=true")  # fmt: skip
    page = result.run_dir / "report" / "index.html"
    shot = tmp_path / "page.png"
    browse = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,3000",
         page.as_uri()], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    console = [line for line in browse.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    assert shot.is_file() and shot.stat().st_size > 20000  # the page rendered its plots
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert dom.count("<img") == len(PLOTS) and "Study " in dom


# -- analyse, export, train the best -----------------------------------------------------------


def start_driver(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ugro_hpo", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})  # fmt: skip


def finished_in(db: Path) -> int:
    """Trials of the watched study that ran (an infeasible proposal never ran)."""
    return sum(outcome_of(t) in RAN for t in stored_trials_while_running(db, "watched"))


@pytest.mark.slow
def test_analyze_and_export_best_work_on_a_running_and_an_interrupted_study(tmp_path: Path) -> None:
    db = tmp_path / "outputs" / "studies.db"
    # Two trials finish at once; the others wait at a gate this test never opens, so the study
    # is still running when it is analysed and interrupted, however fast the machine is.
    gated = ["objective=custom", "objective.fn=fixture_objectives:gated_quadratic", "search_space=quadratic",
             "max_steps=1", "eval_every=1", "scheduler=fifo", "n_trials=8", "parallel_jobs=2", "tracking=none",
             "report=false"]  # fmt: skip
    driver = start_driver(*gated, "study_name=watched", cwd=tmp_path,
                          env={"UGRO_TEST_GATE": str(tmp_path / "gate")})  # fmt: skip
    try:
        deadline = time.time() + 120
        while finished_in(db) < 2 and time.time() < deadline:
            time.sleep(0.2)
        running = run_cli("hpo", "analyze", "--study-name", "watched", "--output-dir", "while_running",
                          module="ugro_hpo.cli", cwd=tmp_path)  # fmt: skip
        driver.send_signal(signal.SIGINT)
        driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert running.returncode == 0, running.stderr[-2000:]
    summary = json.loads((tmp_path / "while_running" / "summary.json").read_text())
    assert summary["status"] == "running" and summary["counts"]["complete"] >= 2
    assert (tmp_path / "while_running" / "report" / "index.html").is_file()

    after = run_cli("hpo", "analyze", "--study-name", "watched", "--output-dir", "after",
                    module="ugro_hpo.cli", cwd=tmp_path)  # fmt: skip
    assert after.returncode == 0, after.stderr[-2000:]
    summary = json.loads((tmp_path / "after" / "summary.json").read_text())
    assert summary["status"] == "incomplete" and summary["finished"] < 8
    stored = optuna.load_study(study_name="watched", storage=f"sqlite:///{db}")
    assert summary["finished"] == sum(outcome_of(t) in RAN for t in stored.trials)

    export = run_cli("hpo", "export-best", "--study-name", "watched", "--output", "best.yaml",
                     module="ugro_hpo.cli", cwd=tmp_path)  # fmt: skip
    assert export.returncode == 0, export.stderr[-2000:]
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best == summary["best"]["params"]
    same = run_cli("hpo", "export-best", "--study-name", "watched", "--output", "best2.yaml",
                   module="ugro_hpo.cli", cwd=tmp_path)  # fmt: skip
    assert (
        same.returncode == 0
        and (tmp_path / "best2.yaml").read_text() == (tmp_path / "best.yaml").read_text()
    )


@pytest.mark.slow
def test_an_unknown_study_is_a_one_line_error(tmp_path: Path) -> None:
    run_cli(*FAST, "n_trials=1", "study_name=known", cwd=tmp_path)
    result = run_cli("hpo", "analyze", "--study-name", "nope", module="ugro_hpo.cli", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ugro_hpo: error: --study-name: no study 'nope' in sqlite:///outputs/studies.db (studies: known)"
    ]


@pytest.mark.slow
def test_train_best_reproduces_the_best_trial_and_saves_its_adapter(
    study, lora_overrides, tmp_path: Path
) -> None:
    result = study(*lora_overrides, f"search_space_file={FIXTURES / 'tiny_lora.yaml'}", "n_trials=2",
                   "max_steps=8", "eval_every=4", "scheduler=fifo", "study_name=final", "report=false")  # fmt: skip
    best = result.summary["best"]
    out = tmp_path / "final_run"
    train = run_cli("hpo", "train-best", "--study-name", "final", "--storage", result.plan.storage,
                    "--output-dir", str(out), module="ugro_hpo.cli", cwd=tmp_path, timeout=600)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["trial"] == best["trial"] and final["max_steps"] == 8
    assert final["metrics"]["eval_loss"] == pytest.approx(best["metrics"]["eval_loss"], rel=1e-4)
    assert (out / "adapters" / f"trial_{best['trial']}" / "adapter_config.json").is_file()
    assert yaml.safe_load((out / "best_params.yaml").read_text()) == best["params"]
