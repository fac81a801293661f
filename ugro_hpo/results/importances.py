"""Which parameters mattered: importances per objective over the complete, feasible trials.

A conditional parameter is measured on the trials where it was sampled, so a knob that exists
only for one optimizer still gets its share.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ugro_hpo.optimize import protocol as p
from ugro_hpo.space import SearchSpace

log = logging.getLogger(__name__)
MIN_TRIALS = 2  # fewer complete trials than this: no importances


def importances(study: optuna.Study, space: SearchSpace) -> dict[str, dict[str, float]]:
    """Optuna's fANOVA importances of every parameter, per objective, over complete trials
    (infeasible ones never ran, so they are left out).

    fANOVA rather than Optuna 5's default PED-ANOVA: on a function where one parameter
    dominates, another matters a little and a third not at all, fANOVA ranked all three right
    in 10 of 10 random 40-trial studies and 5 of 10 at 16 trials, PED-ANOVA in 6 and 3
    (`scripts/bench/importances.py`); it costs about 0.3 s and an sklearn import per study.

    Parameters sampled in every complete trial share one evaluation (they sum to 1). A
    conditional parameter is evaluated on the trials where it was sampled, together with the
    parameters those trials all have: its share of the variance where it is active.
    """
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if p.outcome_of(t) == p.Outcome.COMPLETE]  # fmt: skip
    if len(complete) < MIN_TRIALS:
        return {}
    out: dict[str, dict[str, float]] = {}
    for index, metric in enumerate(space.metric_names):
        target = objective_value(index) if space.is_multi_objective else None
        try:
            scores = _scores(study, complete, space.names, target)
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            log.warning("importances of %s could not be computed: %s", metric, exc)
            continue
        out[metric] = dict(sorted(scores.items(), key=lambda item: -item[1]))
    return out


def objective_value(index: int) -> Callable[[FrozenTrial], float]:
    return lambda trial: float(trial.values[index])


def _scores(
    study: optuna.Study, complete: list[FrozenTrial], names: list[str], target: Any
) -> dict[str, float]:
    def evaluate(trials: list[FrozenTrial], params: list[str]) -> dict[str, float]:
        sub = optuna.create_study(directions=study.directions)
        sub.add_trials(trials)
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                sub, evaluator=evaluator, params=params, target=target
            )
        return {k: round(float(v), 6) for k, v in found.items()}

    shared = [n for n in names if all(n in t.params for t in complete)]
    scores = evaluate(complete, shared) if shared else {}
    for name in names:
        having = [t for t in complete if name in t.params]
        if name in scores or len(having) < MIN_TRIALS:
            continue
        present = [n for n in names if all(n in t.params for t in having)]
        scores[name] = evaluate(having, present)[name]
    return scores
