"""The simulated clocks of a run's workers, shared by every process that trains for the run.

A run has ``workers`` logical workers. A trial takes the idle one whose clock is furthest
behind, advances it by each epoch's simulated time as it trains, and frees it when it ends, so
the clocks measure the simulated training time each worker spent: what a run of real training
would take, without the engines' own overhead (starting processes, scheduling, asking the
sampler: well under a second per trial here, while a real epoch takes minutes) and without
the load of the machine the benchmark shares. The trials still really wait out their epochs,
scaled, in parallel: the asynchronous schedule is real, only its clock is the simulated one.

The state is a small JSON file guarded by ``flock``, so Ray's worker processes, the peers'
threads and the benchmark's watcher all read the same clocks.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class WorkerClocks:
    def __init__(self, path: str | os.PathLike[str], workers: int = 4) -> None:
        self.path = Path(path)
        self.workers = workers
        if not self.path.exists():
            with self._state() as state:
                state.setdefault("clock", [0.0] * workers)
                state.setdefault("busy", [None] * workers)

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        with open(self.path, "a+", encoding="utf-8") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                file.seek(0)
                text = file.read()
                state = json.loads(text) if text else {}
                yield state
                file.seek(0)
                file.truncate()
                file.write(json.dumps(state))
                file.flush()
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

    def acquire(self, owner: str) -> int:
        """The idle worker furthest behind, now busy with ``owner``. (Should every worker be
        marked busy, because a trial ended without freeing its own, the one furthest behind.)"""
        with self._state() as state:
            clocks, busy = state["clock"], state["busy"]
            idle = [w for w in range(self.workers) if busy[w] is None] or list(range(self.workers))
            worker = min(idle, key=lambda w: clocks[w])
            busy[worker] = owner
            return worker

    def advance(self, worker: int, seconds: float) -> float:
        """Add ``seconds`` of training to ``worker``'s clock; its new reading."""
        with self._state() as state:
            state["clock"][worker] += float(seconds)
            return float(state["clock"][worker])

    def release(self, worker: int, owner: str) -> None:
        with self._state() as state:
            if state["busy"][worker] == owner:
                state["busy"][worker] = None

    def readings(self) -> list[float]:
        with self._state() as state:
            return [float(c) for c in state["clock"]]

    def finish(self) -> None:
        """Mark the run ended: every trial still training stops at its next epoch."""
        with self._state() as state:
            state["done"] = True

    def done(self) -> bool:
        with self._state() as state:
            return bool(state.get("done"))

    def wait_done(self, poll_s: float = 0.05) -> None:
        """Wait (a worker whose time is up) until the run ends."""
        while not self.done():
            time.sleep(poll_s)

    def watch(self, budget: float, stop: Callable[[], None], poll_s: float = 0.05,
              deadline_s: float = float("inf")) -> threading.Thread:  # fmt: skip
        """On a daemon thread: once every worker's clock has passed ``budget`` (or
        ``deadline_s`` of wall time has gone by), mark the run ended and call ``stop``."""

        def loop() -> None:
            started = time.monotonic()
            while min(self.readings()) < budget and time.monotonic() - started < deadline_s:
                time.sleep(poll_s)
            self.finish()
            stop()

        thread = threading.Thread(target=loop, name="worker-clocks", daemon=True)
        thread.start()
        return thread
