"""What ends a study early, each on its own: the failure streak, the signal watch, the stopper
Ray polls, and the heartbeat thread."""

from __future__ import annotations

import os
import pickle
import queue
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


class HandTimer:
    """The heartbeat's clock, turned by hand: each `let_pass` lets one interval pass; `waits`
    holds the seconds of each wait the heartbeat began."""

    def __init__(self) -> None:
        self.passed = threading.Semaphore(0)
        self.waits: queue.Queue[float] = queue.Queue()

    def __call__(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.put(seconds)
        while not stop.is_set():  # until an interval is let pass or the heartbeat is stopped
            if self.passed.acquire(timeout=0.05):
                return False
        return True

    def let_pass(self) -> None:
        self.passed.release()


def test_the_heartbeat_beats_once_per_interval_survives_errors_and_stops_on_leaving() -> None:
    timer = HandTimer()
    beats: queue.Queue[threading.Thread] = queue.Queue()

    def beat() -> None:
        beats.put(threading.current_thread())
        if beats.qsize() == 1:
            raise RuntimeError("a storage hiccup")

    with Heartbeat(beat, 30.0, wait=timer):
        assert timer.waits.get(timeout=60) == 30.0 and beats.empty()  # no beat before it passed
        timer.let_pass()
        thread = beats.get(timeout=60)
        assert timer.waits.get(timeout=60) == 30.0 and beats.empty()  # the error did not end it
        timer.let_pass()
        assert beats.get(timeout=60) is thread
        assert timer.waits.get(timeout=60) == 30.0 and beats.empty()
    assert not thread.is_alive()  # left: the thread has ended, so no beat can follow
    assert beats.empty()


def test_the_heartbeat_waits_on_the_real_clock_by_default() -> None:
    beats: queue.Queue[threading.Thread] = queue.Queue()
    with Heartbeat(lambda: beats.put(threading.current_thread()), 0.01):
        thread = beats.get(timeout=60)
        assert beats.get(timeout=60) is thread
    assert not thread.is_alive()
