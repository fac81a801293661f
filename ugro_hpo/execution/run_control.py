"""What can end a study early, and the heartbeat that shows it is alive.

- Ctrl-C or SIGTERM: the running trials stop, everything finished is kept, the summary says
  ``interrupted`` and the next run continues. A second signal ends the process at once (exit
  code 130), like ``kill -9`` but with a message: the storage is transactional, so nothing is
  corrupted, and the next run fails the trials left running. Raising KeyboardInterrupt instead
  would land wherever the main thread happens to be, and Ray's cleanup can turn it into another
  error with a traceback.
- ``max_consecutive_failures`` failed trials in a row: the study stops (a bug, not bad luck)
  instead of burning its budget.
- Any of these, or the searcher giving up (constraints that look unsatisfiable), ends Ray
  Tune's run through `RunStopper`, Ray's public way to stop an experiment.
- The heartbeat renews the storage's record of our running trials, so drivers elsewhere can
  tell a live trial from a dead driver's, and fails theirs once it goes stale.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from ray.tune import Stopper

from ugro_hpo.errors import PROGRAM

log = logging.getLogger("ugro_hpo")
SECOND_SIGNAL_MESSAGE = f"{PROGRAM}: error: interrupted again: exiting now; rerun the same command to continue the study\n"
INTERRUPTED_EXIT_CODE = 130


class FailureStreak:
    """Trips after ``limit`` consecutive failed trials (0: never)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.streak = 0
        self.first_error: str | None = None
        self.tripped = False

    def record(self, failed: bool, error: str | None = None) -> None:
        if not failed:
            self.streak, self.first_error = 0, None
            return
        self.streak += 1
        self.first_error = self.first_error or error
        if self.limit and self.streak >= self.limit and not self.tripped:
            self.tripped = True
            log.error("stopping: the last %d trials all failed (%s)", self.streak, self.first_error)

    def reason(self) -> str:
        return f"the last {self.streak} trials all failed (first error: {self.first_error})"


class InterruptWatch:
    """Turns Ctrl-C and SIGTERM into a graceful stop; a second signal exits at once.

    Used as a context manager around the run: it installs its handlers on entry (in the main
    thread; elsewhere signals cannot be handled) and puts the previous ones back on exit.
    """

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptWatch:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.interrupted.is_set():
            leave_now()
        self.interrupted.set()
        log.warning(
            "%s: stopping the running trials; finished ones are kept (signal again to exit at once)",
            signal.Signals(signum).name,
        )

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def leave_now() -> None:
    """End the process at once with exit code 130, after saying so on stderr."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream must not keep us here
            stream.flush()
    try:
        os.write(2, SECOND_SIGNAL_MESSAGE.encode())
    finally:
        os._exit(INTERRUPTED_EXIT_CODE)


class RunStopper(Stopper):
    """Ray Tune's stopper: ends the whole run when ``should_stop()`` says so (checked after
    every step of Tune's loop), and each running trial at its next report once
    ``stop_trials()`` does (the trial ends as a scheduler's stop ends it, keeping what it
    reported: a spent step budget). Pickles to nothing: it holds live objects and is never
    restored from Ray's experiment state."""

    def __init__(self, should_stop: Callable[[], bool],
                 stop_trials: Callable[[], bool] = lambda: False) -> None:  # fmt: skip
        self.should_stop = should_stop
        self.stop_trials = stop_trials

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return bool(self.stop_trials())

    def stop_all(self) -> bool:
        return bool(self.should_stop())

    def __getstate__(self) -> dict[str, Any]:
        return {}


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds on a daemon thread while the study runs.

    ``wait(stop, seconds)`` is the clock it waits on: it returns True once ``stop`` is set,
    False when ``seconds`` have passed (by default `threading.Event.wait`; a test turns it by
    hand).
    """

    def __init__(
        self,
        beat: Callable[[], None],
        interval: float,
        wait: Callable[[threading.Event, float], bool] = threading.Event.wait,
    ) -> None:
        self.beat = beat
        self.interval = interval
        self.wait = wait
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ugro-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self.wait(self._stop, self.interval):
            try:
                self.beat()
            except Exception as exc:  # a storage hiccup must not end the study
                log.debug("heartbeat failed: %s", exc)
