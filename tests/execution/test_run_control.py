"""What ends a study early, each on its own: the failure streak, the signal watch, the stopper
Ray polls, and the heartbeat thread."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading

from ugro_hpo.execution.run_control import FailureStreak, Heartbeat, InterruptWatch, RunStopper


def test_a_streak_of_failures_trips_and_a_success_resets_it() -> None:
    streak = FailureStreak(3)
    for failed in (True, True, False, True, True):
        streak.record(failed, "boom" if failed else None)
    assert not streak.tripped
    streak.record(True, "later")
    assert streak.tripped and streak.reason() == "the last 3 trials all failed (first error: boom)"
    never = FailureStreak(0)
    for _ in range(50):
        never.record(True, "x")
    assert not never.tripped


def test_the_first_signal_asks_to_stop_and_the_handlers_are_put_back() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with InterruptWatch() as watch:
        os.kill(os.getpid(), signal.SIGTERM)
        assert watch.interrupted.wait(5)
    assert signal.getsignal(signal.SIGTERM) is previous  # put back on leaving


SECOND_SIGNAL_SCRIPT = """
import os, signal, threading
from ugro_hpo.execution.run_control import InterruptWatch
with InterruptWatch() as watch:
    os.kill(os.getpid(), signal.SIGTERM)
    watch.interrupted.wait(5)
    try:  # like a library's cleanup that turns whatever interrupts it into its own error
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(30)
    except BaseException as exc:
        raise RuntimeError("cleanup failed") from exc
print("still running")
"""


def test_the_second_signal_leaves_at_once_whatever_the_main_thread_was_doing() -> None:
    done = subprocess.run([sys.executable, "-c", SECOND_SIGNAL_SCRIPT], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 130, done.stderr
    assert "interrupted again: exiting now" in done.stderr
    assert "still running" not in done.stdout and "cleanup failed" not in done.stderr


def test_the_stopper_ends_the_run_when_asked_and_pickles_to_nothing() -> None:
    stop = threading.Event()
    stopper = RunStopper(stop.is_set)
    assert not stopper.stop_all() and stopper("t", {}) is False
    stop.set()
    assert stopper.stop_all()
    assert pickle.loads(pickle.dumps(stopper)).__dict__ == {}


def test_the_heartbeat_beats_until_the_study_ends_and_survives_errors() -> None:
    beats = threading.Semaphore(0)
    calls: list[int] = []

    def beat() -> None:
        calls.append(1)
        beats.release()
        if len(calls) == 1:
            raise RuntimeError("a storage hiccup")

    with Heartbeat(beat, 0.01):
        assert beats.acquire(timeout=5) and beats.acquire(timeout=5)  # the error did not end it
    count = len(calls)
    assert not Heartbeat(beat, 0.01)._thread.is_alive() and len(calls) == count
