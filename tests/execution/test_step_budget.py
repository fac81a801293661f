"""budget.steps: the study ends once its trials have trained that many steps in all."""

from __future__ import annotations

from typing import Any

import optuna

from ugro_hpo.execution.step_budget import StepBudget
from ugro_hpo.optimize import protocol as p
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart


def _end(trial_id: str, number: int) -> TrialEnd:
    return TrialEnd(trial_id, number, state="complete", metrics={}, violation=None, error=None,
                    last_step=None, values=None, params={})  # fmt: skip


def test_every_reported_step_counts_once_earlier_runs_included() -> None:
    earlier = optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=1.0,
                                        user_attrs={p.TRIAL_LAST_STEP: 4})  # fmt: skip
    budget = StepBudget(10, existing=[earlier])
    assert budget.used == 4 and not budget.tripped
    for trial_id, number in (("a", 1), ("b", 2)):
        budget.trial_started(TrialStart(trial_id, number, params={}))
    budget.trial_result(TrialResult("a", 1, step=2, metrics={}))  # steps 1 and 2
    budget.trial_result(TrialResult("b", 1, step=3, metrics={}))
    assert budget.used == 9 and not budget.tripped
    budget.trial_finished(_end("b", 2))
    budget.trial_result(TrialResult("a", 1, step=3, metrics={}))
    assert budget.used == 10 and budget.tripped
    assert budget.describe() == "10/10 steps" and "budget.steps=10 reached" in budget.reason()
    assert not StepBudget(None).tripped


def test_a_study_ends_when_its_step_budget_is_spent(study: Any) -> None:
    result = study("objective=synthetic", "search_space=branin", "max_steps=5", "eval_every=1",
                   "tracking=none", "n_trials=40", "parallel_jobs=1", "scheduler=fifo",
                   "budget.steps=12")  # fmt: skip
    summary = result.summary
    assert summary["status"] == "budget" and "budget.steps=12 reached" in summary["reason"]
    ran = summary["counts"]["complete"] + summary["counts"]["pruned"]
    assert summary["counts"]["failed"] == 0  # the running trial was stopped, not broken
    assert ran < 40
    # The trial running when the budget ran out stopped at that report.
    assert 12 <= summary["steps_trained"] < 12 + 5
