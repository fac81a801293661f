"""Which importance evaluator ranks parameters right: fANOVA or Optuna 5's default (PED-ANOVA).

On f(a, b, c) = 10 (a - 0.3)^2 + 0.5 b (a dominates, b matters a little, c not at all), with
random search, it counts over 10 seeds how often each evaluator ranks a first and c below b,
and the time per call. ugro_hpo's report uses whichever is measurably better.

    .venv/bin/python scripts/bench/importances.py
"""

from __future__ import annotations

import time
import warnings

import optuna
from benchlib import Result

SEEDS = 10


def study(n_trials: int, seed: int) -> optuna.Study:
    made = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    made.optimize(lambda t: 10 * (t.suggest_float("a", 0, 1) - 0.3) ** 2 + 0.5 * t.suggest_float("b", 0, 1)
                  + 0 * t.suggest_float("c", 0, 1), n_trials=n_trials)  # fmt: skip
    return made


def main() -> int:
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    evaluators = {"fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
                  "PED-ANOVA (Optuna's default)": lambda: None}  # fmt: skip
    result = Result("importances")
    for n_trials in (8, 16, 40):
        for name, make in evaluators.items():
            right, spent = 0, 0.0
            for seed in range(SEEDS):
                made = study(n_trials, seed)
                started = time.perf_counter()
                scores = optuna.importance.get_param_importances(made, evaluator=make())
                spent += time.perf_counter() - started
                right += max(scores, key=scores.get) == "a" and scores["c"] < scores["b"]
            result.add(f"{name}, {n_trials} trials: right order",
                       f"{right}/{SEEDS} ({spent / SEEDS * 1000:.0f} ms per call)")  # fmt: skip
    return result.finish("fANOVA and PED-ANOVA compared (no target)")


if __name__ == "__main__":
    raise SystemExit(main())
