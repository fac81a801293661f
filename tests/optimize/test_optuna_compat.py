"""What we rely on in Optuna beyond its documented API (ugro_hpo/optimize/optuna_compat.py):
these tests fail, not skip, when Optuna moves it."""

from __future__ import annotations

import inspect
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ugro_hpo.optimize import optuna_compat
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.optuna_compat import FeasibilityAwareGP
from ugro_hpo.space import parse_search_space

SPACE = parse_search_space(
    yaml.safe_load(
        "parameters:\n  x1: {type: float, min: 0, max: 1}\n  x2: {type: float, min: 0, max: 1}\n"
        "constraints: ['x1 + x2 <= 0.8']\nobjectives: [{name: value}]\n"
    ),
    "test",
)


def _propose(study: optuna.Study, n: int) -> list[bool]:
    """Ask and tell as our searcher does; True for each proposal that was infeasible."""
    infeasible = []
    for _ in range(n):
        trial = study.ask()
        proposal = SPACE.sample(trial)
        if proposal.violation:
            trial.set_user_attr(p.TRIAL_STATE, p.Outcome.INFEASIBLE.value)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            x1, x2 = proposal.params["x1"], proposal.params["x2"]
            study.tell(trial, (x1 - 0.7) ** 2 + (x2 - 0.6) ** 2)  # best just outside the region
        infeasible.append(bool(proposal.violation))
    return infeasible


def test_optuna_s_study_still_reads_trials_the_way_the_view_answers() -> None:
    ours = inspect.signature(optuna_compat._InfeasibleAsWorst._get_trials).parameters
    theirs = inspect.signature(optuna.Study._get_trials).parameters
    assert list(ours) == list(theirs)


def test_the_gp_reads_the_study_through_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = optuna_compat._InfeasibleAsWorst._get_trials

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = real(self, *args, **kwargs)
        calls.append(found)
        return found

    monkeypatch.setattr(optuna_compat._InfeasibleAsWorst, "_get_trials", spy)
    study = optuna.create_study(sampler=FeasibilityAwareGP(seed=0, n_startup_trials=4))
    _propose(study, 16)
    assert calls, "Optuna's GPSampler no longer reads trials through Study._get_trials"
    stored = {t.number: t for t in study.get_trials()}
    seen = [t for trials in calls for t in trials]
    infeasible = [t for t in seen if p.outcome_of(stored[t.number]) == p.Outcome.INFEASIBLE]
    assert infeasible
    worst = max(t.value for t in stored.values() if t.state == TrialState.COMPLETE)
    for trial in infeasible:
        # seen as complete and no better than the worst that ran; the study is unchanged
        assert trial.state == TrialState.COMPLETE and trial.values[0] <= worst
        assert stored[trial.number].state == TrialState.PRUNED
        assert stored[trial.number].values is None


@pytest.mark.slow
def test_the_gp_learns_to_avoid_what_never_ran() -> None:
    """Measured with the view: 40% of the first 20 proposals infeasible, 7% of the last 20
    (Optuna's own GP, blind to pruned trials: 63% and 85%)."""
    shares = []
    for seed in range(2):
        flags = _propose(optuna.create_study(sampler=FeasibilityAwareGP(seed=seed)), 40)
        shares.append((sum(flags[:20]), sum(flags[20:])))
    assert sum(last for _, last in shares) < sum(first for first, _ in shares) / 2, shares
