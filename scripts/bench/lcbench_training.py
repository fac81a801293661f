"""An LCBench configuration trained epoch by epoch, for every method of the benchmark (our
objective wraps it; the peers call it from their own workers). It needs no ugro_hpo, so the
YAHPO/DEHB venv imports it too.

A trial asks the surrogate for its whole curve once, takes one of the run's workers (see
`worker_clocks`), and for each epoch waits that epoch's simulated training time times the time
scale, advances the worker's clock, reports the validation error (100 - validation accuracy, in
percent) and logs ``{"sim": the worker's clock, "t": wall clock, "worker", "trial", "epoch",
"error"}`` to a trace file, from which the benchmark rebuilds every method's anytime regret.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcbench import EPOCHS, LCBench
from worker_clocks import WorkerClocks

METRIC = "val_error"


@dataclass(frozen=True)
class RunFiles:
    """One run of one method: the task, where the data is, the time scale, and the files its
    workers share (their clocks, and a folder of epoch traces)."""

    task: str
    data: str
    scale: float
    clocks: str
    traces: str
    budget: float  # simulated seconds on every worker's clock
    workers: int = 4

    def spent(self) -> bool:
        """Has the run ended (every worker's clock past the budget, or the run stopped)?"""
        return WorkerClocks(self.clocks, self.workers).done()


_surrogates: dict[str, LCBench] = {}
_lock = threading.Lock()


def surrogate(data: str) -> LCBench:
    """One surrogate per process (a worker reused across trials keeps it)."""
    with _lock:
        if data not in _surrogates:
            _surrogates[data] = LCBench(data)
        return _surrogates[data]


class BudgetSpent(Exception):
    """Every worker's clock has passed the run's budget: stop training."""


def train(run: RunFiles, params: dict[str, Any], trial: str,
          report: Callable[[int, float], None], epochs: int = EPOCHS) -> float:  # fmt: skip
    """Train ``params`` for ``epochs`` epochs (unless ``report`` raises to stop it) on one of
    the run's workers: wait each epoch's scaled time, advance the worker's clock, log the epoch
    and report its validation error. Returns the last epoch's error.

    An epoch that would end past the budget is neither logged nor reported: the worker has no
    time left, so it waits for the run to end (raising `BudgetSpent` then) rather than
    let the method learn from results it could not have had in time.
    """
    curves = surrogate(run.data).curves(run.task, [params])
    seconds, accuracy = curves.epoch_seconds[0], curves.val_accuracy[0]
    clocks = WorkerClocks(run.clocks, run.workers)
    owner = f"{trial}/{os.getpid()}/{threading.get_ident()}"
    worker = clocks.acquire(owner)
    error = float("nan")
    try:
        with (Path(run.traces) / f"{os.getpid()}-{threading.get_ident()}.jsonl").open("a") as out:
            if clocks.readings()[worker] >= run.budget:
                clocks.wait_done()  # the only idle workers have no time left
            for epoch in range(1, epochs + 1):
                if run.spent():
                    raise BudgetSpent
                time.sleep(float(seconds[epoch - 1]) * run.scale)
                at = clocks.advance(worker, float(seconds[epoch - 1]))
                if at > run.budget:
                    clocks.wait_done()
                    raise BudgetSpent
                error = 100.0 - float(accuracy[epoch - 1])
                out.write(json.dumps({"sim": at, "t": time.time(), "worker": worker, "trial": trial,
                                      "epoch": epoch, "error": error}) + "\n")  # fmt: skip
                out.flush()
                report(epoch, error)
    finally:
        clocks.release(worker, owner)
    return error
