"""The progress line: counts by outcome as the searcher tells them, the best value, the ETA,
and how it is shown (redrawn in a terminal, logged at intervals elsewhere)."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from ugro_hpo.execution.progress import Progress, clock
from ugro_hpo.optimize import protocol as p
from ugro_hpo.trial_events import TrialStart

D = {"x": optuna.distributions.FloatDistribution(0, 1)}


def _trial(number: int, state: TrialState, value: float | None = None, attrs: dict | None = None):  # type: ignore[no-untyped-def]
    trial = create_trial(
        state=state, value=value, params={"x": 0.5}, distributions=D, user_attrs=attrs or {}
    )
    trial.number = number
    return trial


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_counts_best_and_running_follow_the_events() -> None:
    progress = Progress(
        4,
        metric="loss",
        existing=[_trial(0, TrialState.COMPLETE, 3.0)],
        stream=io.StringIO(),
        interval_s=25.0,
    )
    progress.trial_started(TrialStart("a", 1, {}))
    progress.trial_started(TrialStart("b", 2, {}))
    assert progress.running == 2 and progress.done == 1
    progress.trial_finished(p.trial_end("a", _trial(1, TrialState.COMPLETE, 1.5)))
    progress.trial_finished(
        p.trial_end(
            "infeasible-3", _trial(3, TrialState.COMPLETE, 9.0, {p.TRIAL_STATE: "infeasible"})
        )
    )
    progress.trial_finished(p.trial_end("b", _trial(2, TrialState.FAIL)))
    text = progress.text()
    assert text.startswith("2/4 done (2 complete, 0 pruned, 1 infeasible) | 0 running | 1 failed")
    assert (
        "best loss 1.5 (trial 1)" in text and "ETA" in text
    )  # the infeasible stand-in is not best


def test_a_terminal_gets_a_redrawn_line_and_a_log_gets_lines(caplog) -> None:  # type: ignore[no-untyped-def]
    terminal = Terminal()
    progress = Progress(2, metric=None, stream=terminal, interval_s=25.0)
    progress.render(force=True)
    progress.close()
    assert terminal.getvalue().startswith("\r\x1b[2K0/2 done") and terminal.getvalue().endswith(
        "\n"
    )
    with caplog.at_level(logging.INFO, logger="ugro_hpo.execution.progress"):
        logged = Progress(2, metric=None, stream=io.StringIO(), interval_s=3600)
        logged.render(force=True)
        logged.render()  # within the interval: nothing more
    assert [r.message for r in caplog.records] == ["progress: " + logged.text()]


class HandClock:
    """A monotonic clock that moves only when the test turns it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_each_interval_on_the_clock_even_when_no_trial_reports(caplog) -> None:  # type: ignore[no-untyped-def]
    hand = HandClock()
    progress = Progress(1, metric=None, stream=io.StringIO(), interval_s=25.0, clock=hand)
    with caplog.at_level(logging.INFO, logger="ugro_hpo.execution.progress"):
        progress.trial_started(TrialStart("a", 0, {}))
        hand.now += 24.9
        progress.tick()  # within the interval: no line
        hand.now += 0.1
        progress.tick()  # the interval has passed: a line though no trial reported
        hand.now += 25.0
        progress.tick()
    assert [r.message for r in caplog.records] == [
        "progress: 0/1 done (0 complete, 0 pruned, 0 infeasible) | 1 running | 0 failed | 00:00 elapsed",
        "progress: 0/1 done (0 complete, 0 pruned, 0 infeasible) | 1 running | 0 failed | 00:25 elapsed",
        "progress: 0/1 done (0 complete, 0 pruned, 0 infeasible) | 1 running | 0 failed | 00:50 elapsed",
    ]  # fmt: skip


def test_elapsed_time_and_the_eta_are_read_from_the_clock() -> None:
    hand = HandClock()
    progress = Progress(3, metric="loss", stream=io.StringIO(), clock=hand, interval_s=25.0)
    hand.now += 60.0
    progress.trial_finished(p.trial_end("a", _trial(0, TrialState.COMPLETE, 1.0)))
    assert progress.text().endswith("| 01:00 elapsed | ETA 02:00")  # 60 s a trial, 2 to go
    hand.now += 3540.0
    assert progress.text().endswith("| 1:00:00 elapsed | ETA 2:00:00")


def test_a_terminal_line_is_redrawn_at_most_twice_a_second_on_the_clock() -> None:
    hand = HandClock()
    terminal = Terminal()
    progress = Progress(2, metric=None, stream=terminal, clock=hand, interval_s=25.0)
    progress.tick()
    hand.now += 0.4
    progress.tick()
    assert terminal.getvalue().count("\r") == 1
    hand.now += 0.1
    progress.tick()
    assert terminal.getvalue().count("\r") == 2


def test_clock() -> None:
    assert (clock(5), clock(75), clock(3700)) == ("00:05", "01:15", "1:01:40")


@pytest.mark.slow  # a whole study; the unit tests above check the timing with a hand clock
def test_a_log_gets_a_progress_line_every_interval_while_no_trial_reports(
    tmp_path: Path, ray_address: str
) -> None:
    release = Path(os.environ["UGRO_TEST_MARKERS"], "release")
    release.unlink(missing_ok=True)
    driver = subprocess.Popen(
        [sys.executable, "-m", "ugro_hpo", "objective=custom", "objective.fn=fixture_objectives:waits_for_release",
         "search_space=quadratic", "tracking=none", "n_trials=1", "parallel_jobs=1", "progress_interval_s=1",
         f"ray.address={ray_address}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    give_up = threading.Timer(240, release.touch)  # without ticking lines the test ends, failing
    give_up.start()
    try:
        assert driver.stderr is not None
        waiting = 0
        for line in driver.stderr:  # the trial is held: only a ticking clock can add lines
            waiting += "progress: 0/1 done" in line and "| 1 running" in line
            if waiting == 3:
                break
        release.touch()
        driver.communicate(timeout=300)
    finally:
        give_up.cancel()
        release.unlink(missing_ok=True)
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert waiting == 3 and driver.returncode == 0
