"""search=multi_fidelity: TPE fitted on the study as seen at its highest well-observed rung."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from ugro_hpo.optimize import multi_fidelity
from ugro_hpo.optimize.multi_fidelity import FINAL, MultiFidelitySampler, choose_rung

X = {"x": FloatDistribution(0.0, 1.0)}


def trial(x: float, state: TrialState, curve: dict[int, float], **extra: Any) -> Any:
    return create_trial(state=state, params={"x": x}, distributions=X,
                        intermediate_values=curve, **extra)  # fmt: skip


def asha_like_study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """What ASHA leaves mid-study: around x = 0.2 trials that looked good at step 1 and were
    stopped at step 2; around x = 0.85 the promoted trials, still running at step 4 with the
    best values of the study there."""
    study = optuna.create_study(sampler=sampler)
    for i in range(12):
        x = 0.15 + 0.01 * i
        study.add_trial(trial(x, TrialState.PRUNED, {1: 0.30, 2: 0.50 + 0.01 * i}))
    for i in range(6):
        x = 0.82 + 0.01 * i
        study.add_trial(
            trial(x, TrialState.RUNNING, {1: 0.40, 2: 0.35, 3: 0.3, 4: 0.20 + 0.01 * i})
        )
    return study


def proposals(study: optuna.Study, n: int) -> list[float]:
    """``n`` proposals from the study as it is (each told as failed, so the data stays)."""
    out = []
    for _ in range(n):
        asked = study.ask()
        out.append(asked.suggest_float("x", 0.0, 1.0))
        study.tell(asked, state=TrialState.FAIL)
    return out


def test_it_proposes_from_the_trials_that_reached_the_highest_rung_running_ones_included() -> None:
    sampler = MultiFidelitySampler(seed=0, min_observations=5)
    near_promoted = [x for x in proposals(asha_like_study(sampler), 20) if x > 0.6]
    assert sampler.last_view is not None and sampler.last_view.rung == 4
    assert sampler.last_view.observed == 6
    assert len(near_promoted) >= 15


def test_plain_tpe_on_the_same_study_counts_the_promoted_trials_as_bad() -> None:
    """Why the sampler exists: TPE's constant liar holds every running trial as bad, so it
    proposes around the trials ASHA stopped."""
    tpe = optuna.samplers.TPESampler(seed=0, n_startup_trials=5, multivariate=True,
                                     constant_liar=True)  # fmt: skip
    near_promoted = [x for x in proposals(asha_like_study(tpe), 20) if x > 0.6]
    assert len(near_promoted) <= 5


@pytest.mark.parametrize(
    ("curves", "needed", "rung"),
    [
        ([{1: 0.5}, {1: 0.4}, {1: 0.3, 2: 0.2}], 3, 1),
        ([{1: 0.5, 2: 0.1}, {1: 0.4, 2: 0.3}, {1: 0.3, 2: 0.2}], 3, 2),
        ([{1: 0.5, 2: 0.1, 4: 0.05}, {1: 0.4, 2: 0.3}, {1: 0.3, 2: 0.2}], 2, 2),
        ([{1: 0.5}, {1: 0.4}], 3, None),
        ([{FINAL: 0.5}, {FINAL: 0.4}, {1: 0.3}], 2, FINAL),  # a study without reports
        ([], 1, None),
    ],
)
def test_the_rung_is_the_highest_step_enough_trials_reached(
    curves: list[dict[float, float]], needed: int, rung: float | None
) -> None:
    assert choose_rung(curves, needed) == rung


def test_it_samples_at_random_until_a_step_has_enough_observations() -> None:
    sampler = MultiFidelitySampler(seed=3, min_observations=5)
    study = optuna.create_study(sampler=sampler)
    for x in (0.1, 0.2, 0.3, 0.4):
        study.add_trial(trial(x, TrialState.PRUNED, {1: x}))
    ours = proposals(study, 3)
    assert sampler.last_view is None
    reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    assert ours == proposals(reference, 3)


def test_the_default_start_up_is_one_more_trial_than_parameters_and_at_least_five() -> None:
    sampler = MultiFidelitySampler(seed=0, min_observations=None)
    study = optuna.create_study(sampler=sampler)
    for x in (0.1, 0.2, 0.3, 0.4):
        study.add_trial(trial(x, TrialState.PRUNED, {1: x}))
    proposals(study, 1)
    assert sampler.last_view is None  # 4 observations, 1 parameter: not yet
    study.add_trial(trial(0.5, TrialState.RUNNING, {1: 0.5}))  # a running trial's first report
    proposals(study, 1)
    assert sampler.last_view is not None and sampler.last_view.rung == 1


def test_each_ask_uses_what_has_arrived_without_waiting_for_the_rung_to_fill() -> None:
    sampler = MultiFidelitySampler(seed=0, min_observations=3)
    study = optuna.create_study(sampler=sampler)
    for x in (0.1, 0.2, 0.3, 0.4):
        study.add_trial(trial(x, TrialState.PRUNED, {1: x}))
    study.add_trial(trial(0.9, TrialState.RUNNING, {}))  # nothing reported yet
    proposals(study, 1)
    view = sampler.last_view
    assert view is not None and view.rung == 1 and view.observed == 4
    # The running trial stands in the view as running: TPE's liar keeps proposals off it.
    running = view.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert [t.params for t in running if t.params] == [{"x": 0.9}]
    # Three trials report a second step, one of them still running: the next ask fits there.
    for x in (0.5, 0.6):
        study.add_trial(trial(x, TrialState.PRUNED, {1: 0.2, 2: 0.1}))
    study.add_trial(trial(0.7, TrialState.RUNNING, {1: 0.2, 2: 0.05}))
    proposals(study, 1)
    assert sampler.last_view is not None and sampler.last_view.rung == 2


def test_infeasible_trials_keep_their_constraints_and_are_no_observations() -> None:
    sampler = MultiFidelitySampler(seed=0, min_observations=3)
    study = optuna.create_study(sampler=sampler)
    for x in (0.1, 0.2, 0.3):
        study.add_trial(trial(x, TrialState.PRUNED, {1: x}))
    # As stored now (complete, a stand-in value) and as pruned without values.
    study.add_trial(trial(0.8, TrialState.COMPLETE, {}, value=9.0, constraints={"c": 1.0}))
    study.add_trial(trial(0.9, TrialState.PRUNED, {}, constraints={"c": 2.0}))
    proposals(study, 1)
    view = sampler.last_view
    assert view is not None and view.observed == 3
    held = {t.params["x"]: t for t in view.study.get_trials(deepcopy=False) if t.params}
    assert held[0.8].constraints == {"c": 1.0} and held[0.9].constraints == {"c": 2.0}


def test_several_objectives_go_to_tpe_unchanged() -> None:
    sampler = MultiFidelitySampler(seed=0, min_observations=None)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(12):
        asked = study.ask()
        x = asked.suggest_float("x", 0.0, 1.0)
        study.tell(asked, [x, 1 - x])
    assert sampler.last_view is None and len(study.trials) == 12


def counting(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[int]:
    """Count the calls of ``target.name`` (the real one still runs)."""
    calls = [0]
    real: Callable[..., Any] = getattr(target, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, counted)
    return calls


@pytest.mark.parametrize("n_trials", [40, 300])
def test_an_ask_reads_the_study_once_and_builds_one_stand_in_per_trial(
    monkeypatch: pytest.MonkeyPatch, n_trials: int
) -> None:
    """What bounds an ask's cost at any size: one read of the study's trials, one stand-in
    each, one model's proposal on the view (300 trials ask in tens of milliseconds; see
    scripts/bench/multi_fidelity.py)."""
    sampler = MultiFidelitySampler(seed=0, min_observations=None)
    study = optuna.create_study(sampler=sampler)
    study.add_trials([trial(i / n_trials, TrialState.PRUNED, {1: i / n_trials, 2: 0.5})
                      for i in range(n_trials)])  # fmt: skip
    reads = counting(monkeypatch, study, "get_trials")
    stand_ins = counting(monkeypatch, multi_fidelity, "create_trial")
    gp_fits = counting(monkeypatch, optuna.samplers.GPSampler, "sample_relative")
    tpe_fits = counting(monkeypatch, optuna.samplers.TPESampler, "sample_relative")
    proposals(study, 1)
    assert (reads[0], stand_ins[0], gp_fits[0] + tpe_fits[0]) == (1, n_trials + 1, 1)
