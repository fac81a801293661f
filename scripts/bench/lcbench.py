"""YAHPO Gym's LCBench surrogate, answered by onnxruntime directly: learning curves (validation
accuracy and cumulative training time over epochs 1-52) of a 7-parameter MLP on 34 OpenML
tasks, and the bounds that normalise a task's regret.

The data (``model.onnx``, ``encoding.json``, ``config_space.json`` and the target statistics)
are read where they lie, never copied: ``--data`` of a benchmark, else ``$UGRO_YAHPO_DATA``, else
``../shared/benchmarks/yahpo_data`` beside the repository. This module needs only numpy and
onnxruntime, so the project's environment and the YAHPO/DEHB venv both import it.

The input encoding is YAHPO Gym's (``BenchmarkSet._config_to_xs``): the task's integer code as
``x_cat``, and ``epoch`` followed by the six other parameters in their natural units as
``x_cont``. ``validate_surrogate.py`` checks the two give the same outputs.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATA_ENV = "UGRO_YAHPO_DATA"
EPOCHS = 52
OUTPUTS = ("time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy",
           "test_cross_entropy", "test_balanced_accuracy")  # fmt: skip
# The order of x_cont after `epoch` (YAHPO Gym's cont_names for lcbench).
PARAMETERS = ("batch_size", "learning_rate", "momentum", "weight_decay", "num_layers",
              "max_units", "max_dropout")  # fmt: skip
# (low, high, log, integer): the space of config_space.json, without the task and the epoch.
SPACE: dict[str, tuple[float, float, bool, bool]] = {
    "batch_size": (16, 512, True, True),
    "learning_rate": (1e-4, 1e-1, True, False),
    "momentum": (0.1, 0.99, False, False),
    "weight_decay": (1e-5, 1e-1, False, False),
    "num_layers": (1, 5, False, True),
    "max_units": (64, 1024, True, True),
    "max_dropout": (0.0, 1.0, False, False),
}
DEFAULT_TASKS = ("3945", "34539", "126026", "146212", "167104", "167149", "167168", "168330",
                 "168868", "189906")  # fmt: skip
"""Ten tasks of different kinds (2 to 100 classes, easy and hard), each with a median
52-epoch training of 50 to 200 simulated seconds."""


class DataMissing(RuntimeError):
    """The surrogate's files are not where they were looked for."""


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the YAHPO data folder is: the argument, ``$UGRO_YAHPO_DATA``, or the default."""
    if explicit:
        path = Path(explicit)
    elif os.environ.get(DATA_ENV):
        path = Path(os.environ[DATA_ENV])
    else:
        path = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "yahpo_data"
    needed = [path / "lcbench" / name for name in ("model.onnx", "encoding.json")]
    needed.append(path / "global_statistics" / "instance_target_statistics.csv")
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise DataMissing(
            f"the LCBench surrogate (YAHPO Gym's data folder) is not at {path}: missing "
            f"{', '.join(missing)}; point --data or ${DATA_ENV} at the folder holding "
            f"lcbench/ and global_statistics/"
        )
    return path


@dataclass(frozen=True)
class Curves:
    """One task's answers for a batch of configurations, one row each, epochs 1..52."""

    elapsed: np.ndarray  # cumulative training time at the end of each epoch (s), non-decreasing
    val_accuracy: np.ndarray  # percent

    @property
    def epoch_seconds(self) -> np.ndarray:
        """How long each epoch takes: the cumulative time's increments."""
        return np.diff(self.elapsed, axis=1, prepend=0.0)


@dataclass(frozen=True)
class Bounds:
    """A task's best and worst validation accuracy over YAHPO's 500,000 random points (every
    epoch): the ends of its normalised regret."""

    best: float
    worst: float

    def regret(self, val_accuracy: float) -> float:
        return (self.best - val_accuracy) / (self.best - self.worst)


class LCBench:
    """The surrogate: batched learning curves for one task at a time."""

    def __init__(self, data: str | os.PathLike[str] | None = None, threads: int = 1) -> None:
        import onnxruntime as rt

        self.data = data_dir(data)
        options = rt.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        self.session = rt.InferenceSession(
            str(self.data / "lcbench" / "model.onnx"), sess_options=options,
            providers=["CPUExecutionProvider"],
        )  # fmt: skip
        encoding = json.loads((self.data / "lcbench" / "encoding.json").read_text())
        self.codes: dict[str, int] = {
            task: int(code) for task, code in encoding["OpenML_task_id"].items() if task != "#na#"
        }
        self._bounds = _read_bounds(
            self.data / "global_statistics" / "instance_target_statistics.csv"
        )
        self.tasks = sorted(set(self.codes) & set(self._bounds), key=int)

    def check_task(self, task: str) -> str:
        if task not in self.tasks:
            raise ValueError(f"--tasks: {task!r} is not an LCBench task ({', '.join(self.tasks)})")
        return task

    def bounds(self, task: str) -> Bounds:
        return self._bounds[self.check_task(task)]

    def predict(self, task: str | Sequence[str], rows: np.ndarray) -> np.ndarray:
        """The raw outputs (columns: `OUTPUTS`) for rows of (epoch, *PARAMETERS), on one task
        or on one task per row."""
        x_cont = np.asarray(rows, dtype=np.float32).reshape(-1, 1 + len(PARAMETERS))
        tasks = [task] * len(x_cont) if isinstance(task, str) else list(task)
        codes = [self.codes[self.check_task(t)] for t in tasks]
        x_cat = np.array(codes, dtype=np.int32).reshape(-1, 1)
        return self.session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0]

    def curves(self, task: str, configs: Sequence[Mapping[str, Any]]) -> Curves:
        """Whole learning curves (epochs 1..52) of ``configs`` on ``task``, in one call."""
        params = np.array([[float(c[name]) for name in PARAMETERS] for c in configs])
        epochs = np.arange(1, EPOCHS + 1, dtype=float)
        rows = np.column_stack([np.repeat(epochs[None, :], len(params), 0).reshape(-1, 1),
                                np.repeat(params, EPOCHS, axis=0)])  # fmt: skip
        out = self.predict(task, rows).reshape(len(params), EPOCHS, len(OUTPUTS)).astype(float)
        # The surrogate's time is not always monotone; a clock is.
        elapsed = np.maximum.accumulate(np.maximum(out[:, :, 0], 0.0), axis=1)
        return Curves(elapsed=elapsed, val_accuracy=out[:, :, 1])


def _read_bounds(path: Path) -> dict[str, Bounds]:
    seen: dict[tuple[str, str], float] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            if row["scenario"] == "lcbench" and row["metric"] == "val_accuracy":
                seen[(row["instance"], row["statistic"])] = float(row["value"])
    tasks = {task for task, _ in seen}
    return {t: Bounds(best=seen[(t, "max")], worst=seen[(t, "min")]) for t in tasks
            if (t, "max") in seen and (t, "min") in seen}  # fmt: skip


def random_configs(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configurations drawn uniformly (log-uniformly where the space is on a log scale)."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, (low, high, log, integer) in SPACE.items():
        if log:
            values = np.exp(rng.uniform(np.log(low), np.log(high), n))
        elif integer:
            values = rng.integers(int(low), int(high) + 1, n).astype(float)
        else:
            values = rng.uniform(low, high, n)
        for config, value in zip(out, values, strict=True):
            config[name] = int(np.clip(np.rint(value), low, high)) if integer else float(value)
    return out
