"""Optuna in one process on an LCBench run: TPE with Optuna's Hyperband pruner, four worker
threads asking and telling one in-memory study, each trial trained epoch by epoch on the run's
workers (the same training and clocks as every other method).

    python lcbench_optuna.py RUN_JSON SEED

RUN_JSON holds the fields of `lcbench_training.RunFiles`. Sampler and pruner are Optuna's
defaults but for the seed and the pruner's resources (1 to 52 epochs).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna
from lcbench import EPOCHS, SPACE
from lcbench_training import BudgetSpent, RunFiles, train


def suggest(trial: optuna.Trial) -> dict[str, float | int]:
    params: dict[str, float | int] = {}
    for name, (low, high, log, integer) in SPACE.items():
        if integer:
            params[name] = trial.suggest_int(name, int(low), int(high), log=log)
        else:
            params[name] = trial.suggest_float(name, low, high, log=log)
    return params


def worker(study: optuna.Study, run: RunFiles) -> None:
    while not run.spent():
        trial = study.ask()

        def report(epoch: int, error: float, trial: optuna.Trial = trial) -> None:
            trial.report(error, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned

        try:
            error = train(run, suggest(trial), str(trial.number), report, epochs=EPOCHS)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        except BudgetSpent:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        study.tell(trial, error)


def main() -> None:
    run = RunFiles(**json.loads(Path(sys.argv[1]).read_text()))
    seed = int(sys.argv[2])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS),
    )
    threads = [threading.Thread(target=worker, args=(study, run)) for _ in range(run.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"trials": len(study.trials)}))


if __name__ == "__main__":
    main()
