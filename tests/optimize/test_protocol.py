"""How a stored trial reads back: each Optuna state and attribute to our outcome, including
studies stored by earlier versions (infeasible trials as pruned with a violation)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from ugro_hpo.optimize import protocol as p

D = {"x": optuna.distributions.FloatDistribution(0, 1)}


@pytest.mark.parametrize(
    ("state", "values", "attrs", "outcome"),
    [
        (TrialState.COMPLETE, [1.0], {}, p.Outcome.COMPLETE),
        (TrialState.COMPLETE, [1.0], {p.TRIAL_STATE: "infeasible"}, p.Outcome.INFEASIBLE),
        (TrialState.PRUNED, None, {}, p.Outcome.PRUNED),
        (
            TrialState.PRUNED,
            None,
            {p.TRIAL_VIOLATION: "x < 1"},
            p.Outcome.INFEASIBLE,
        ),  # older studies
        (TrialState.PRUNED, None, {p.TRIAL_STATE: "infeasible"}, p.Outcome.INFEASIBLE),
        (TrialState.FAIL, None, {}, p.Outcome.FAILED),
        (TrialState.RUNNING, None, {}, p.Outcome.RUNNING),
        (TrialState.WAITING, None, {}, p.Outcome.WAITING),
    ],
)
def test_outcome_of_a_stored_trial(state, values, attrs, outcome) -> None:  # type: ignore[no-untyped-def]
    trial = create_trial(
        state=state, values=values, params={"x": 0.5}, distributions=D, user_attrs=attrs
    )
    assert p.outcome_of(trial) == outcome


def test_only_trials_that_ran_count_towards_n_trials() -> None:
    assert set(p.RAN) == {p.Outcome.COMPLETE, p.Outcome.PRUNED}
    assert p.RESULT_STATE in p.RESULT_KEYS and p.STEP in p.RESULT_KEYS
