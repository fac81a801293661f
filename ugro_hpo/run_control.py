"""What can end a study early, and the heartbeat that shows it is alive.

- Ctrl-C or SIGTERM: the running trials stop, everything finished is kept, the summary says
  ``interrupted`` and the next run continues. A second signal leaves at once; the storage is
  transactional, so nothing is corrupted.
- ``max_consecutive_failures`` failed trials in a row: the study stops (a bug, not bad luck)
  instead of burning its budget.
- The heartbeat renews the storage's record of our running trials, so drivers elsewhere can
  tell a live trial from a dead driver's, and fails theirs once it goes stale.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from ray.tune import Callback, Stopper

log = logging.getLogger("ugro_hpo")


class NotPersisted:
    """Ray pickles its searcher, callbacks and stopper into the experiment directory
    (tuner.pkl). Ours hold live state (locks, connections, credentials such as a tracking
    URI's password) and are never restored from there (the Optuna storage is the study's
    record), so they pickle to nothing."""

    def __getstate__(self) -> dict[str, Any]:
        return {}


class FailureStreak(NotPersisted, Stopper):
    """Stops the whole experiment after ``limit`` consecutive failed trials (0: never)."""

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

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.tripped

    def reason(self) -> str:
        return f"the last {self.streak} trials all failed (first error: {self.first_error})"


class InterruptWatch(NotPersisted, Callback):
    """Turns Ctrl-C and SIGTERM into Ray Tune's graceful stop; a second signal exits at once.

    Installed from Ray's ``setup`` hook, after Ray Tune has set its own SIGINT handler, which it
    wraps.
    """

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        self._previous: dict[int, Any] = {}

    def setup(
        self, stop: Any = None, num_samples: Any = None, total_num_samples: Any = None, **info: Any
    ) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        ray_handler = signal.getsignal(signal.SIGINT)

        def handle(signum: int, frame: Any) -> None:
            if self.interrupted.is_set():
                raise KeyboardInterrupt
            self.interrupted.set()
            log.warning(
                "%s: stopping the running trials; finished ones are kept (signal again to exit at once)",
                signal.Signals(signum).name,
            )
            if callable(ray_handler):
                ray_handler(signal.SIGINT, frame)

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handle)

    def restore(self) -> None:
        """Put SIGTERM back (Ray restores SIGINT itself); a signal after this exits as usual."""
        if (
            threading.current_thread() is threading.main_thread()
            and signal.SIGTERM in self._previous
        ):
            signal.signal(signal.SIGTERM, self._previous.pop(signal.SIGTERM))


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds on a daemon thread while the study runs."""

    def __init__(self, beat: Any, interval: float) -> None:
        self.beat = beat
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ugro-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # a storage hiccup must not end the study
                log.debug("heartbeat failed: %s", exc)
