"""Plain Optuna in one process: N trivial Branin trials, random sampler, two threads.

python optuna_plain.py N_TRIALS
"""

import sys

import optuna

from ugro_hpo.objectives.synthetic import branin as branin_function  # stdlib only


def branin(trial: optuna.Trial) -> float:
    return branin_function([trial.suggest_float("x1", -5, 10), trial.suggest_float("x2", 0, 15)])[0]


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(branin, n_trials=int(sys.argv[1]), n_jobs=2)
    print("best", study.best_value)
