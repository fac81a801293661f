"""DEHB (``dehb`` on PyPI) on an LCBench run, through its ask-and-tell interface: four worker
threads each ask for a configuration and a fidelity, train it for that many epochs from scratch
(DEHB does not continue a configuration; a promotion is trained anew, as in its own
benchmarks) on the run's workers, and tell the last epoch's error and the simulated cost.
Runs in the YAHPO/DEHB venv (DEHB needs numpy < 2).

    python lcbench_dehb.py RUN_JSON SEED

DEHB's defaults but for the seed and the fidelities (1 to 52 epochs; eta 3).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ConfigSpace as CS
from dehb import DEHB
from lcbench import EPOCHS, SPACE
from lcbench_training import BudgetSpent, RunFiles, surrogate, train


def config_space(seed: int) -> CS.ConfigurationSpace:
    space = CS.ConfigurationSpace(seed=seed)
    for name, (low, high, log, integer) in SPACE.items():
        kind = CS.UniformIntegerHyperparameter if integer else CS.UniformFloatHyperparameter
        space.add_hyperparameter(kind(name, low, high, log=log))
    return space


def worker(dehb: DEHB, lock: threading.Lock, run: RunFiles, counter: list[int]) -> None:
    while not run.spent():
        with lock:
            job = dehb.ask()
            counter[0] += 1
            number = counter[0]
        params = dict(job["config"])
        epochs = max(1, min(EPOCHS, round(float(job["fidelity"]))))
        try:
            error = train(run, params, str(number), lambda epoch, error: None, epochs=epochs)
        except BudgetSpent:
            return
        cost = float(surrogate(run.data).curves(run.task, [params]).elapsed[0][epochs - 1])
        with lock:
            dehb.tell(job, {"fitness": error, "cost": cost})


def main() -> None:
    run = RunFiles(**json.loads(Path(sys.argv[1]).read_text()))
    seed = int(sys.argv[2])
    space = config_space(seed)
    with tempfile.TemporaryDirectory() as scratch:
        dehb = DEHB(cs=space, dimensions=len(space.get_hyperparameters()), min_fidelity=1,
                    max_fidelity=EPOCHS, n_workers=1, seed=seed, output_path=scratch,
                    log_level="ERROR")  # fmt: skip
        lock, counter = threading.Lock(), [0]
        threads = [threading.Thread(target=worker, args=(dehb, lock, run, counter))
                   for _ in range(run.workers)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(json.dumps({"jobs": counter[0]}))


if __name__ == "__main__":
    main()
