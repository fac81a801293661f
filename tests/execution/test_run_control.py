"""What ends a study early, each on its own: the failure streak, the signal watch, the stopper
Ray polls, and the heartbeat thread."""

from __future__ import annotations

import os
import pickle
import signal
import threading

import pytest

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


def test_the_first_signal_asks_to_stop_the_second_leaves() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with InterruptWatch() as watch:
        os.kill(os.getpid(), signal.SIGTERM)
        assert watch.interrupted.wait(5)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is previous  # put back on leaving


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
