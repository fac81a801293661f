"""warm_start=[...]: a new study runs the best trials of earlier ones first, only those whose
parameters fit its space, and says what it took from where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from ugro_hpo.config.plan import build_plan
from ugro_hpo.errors import ConfigError
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.storage import open_study

BRANIN = ("objective=synthetic", "search_space=branin", "max_steps=2", "tracking=none")


def _earlier(url: str, name: str, trials: list[tuple[dict[str, Any], float | None]]) -> None:
    """An earlier study as any driver (or a stranger) may have left it."""
    study = optuna.create_study(study_name=name, storage=url)
    for params, value in trials:
        distributions = {k: optuna.distributions.FloatDistribution(-100, 100) for k in params}
        state = TrialState.COMPLETE if value is not None else TrialState.PRUNED
        study.add_trial(create_trial(params=params, distributions=distributions, state=state,
                                     value=value))  # fmt: skip


def _queued(plan: Any) -> list[optuna.trial.FrozenTrial]:
    opened = open_study(plan)
    return opened.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def test_the_best_fitting_trials_of_earlier_studies_are_queued_first(
    compose: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'outputs' / 'studies.db'}"
    (tmp_path / "outputs").mkdir()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    _earlier(url, "a", [
        ({"x1": 1.0, "x2": 2.0}, 5.0),
        ({"x1": 50.0, "x2": 2.0}, 0.1),  # x1 outside this space: passed over
        ({"x1": 3.0, "x2": 4.0}, 1.0),
        ({"x1": 3.0, "x2": 4.0, "lr": 0.1}, 0.2),  # a parameter this space lacks
        ({"x1": 0.0, "x2": 0.0}, None),  # pruned: not complete
        ({"x1": 2.0, "x2": 9.0}, float("-inf")),  # no finite value (it would rank first)
    ])  # fmt: skip
    _earlier(other, "b", [({"x1": 7.0, "x2": 7.0}, 2.0), ({"x1": -1.0, "x2": 1.0}, 9.0)])
    cfg = compose(*BRANIN, "study_name=new", "warm_start=[a,b@" + other + "]",
                  "warm_start_trials=3")  # fmt: skip
    queued = _queued(build_plan(cfg, tmp_path / "run"))
    # Best first, taking turns: a's best, b's best, a's second.
    assert [t.system_attrs["fixed_params"] for t in queued] == [
        {"x1": 3.0, "x2": 4.0}, {"x1": 7.0, "x2": 7.0}, {"x1": 1.0, "x2": 2.0},
    ]  # fmt: skip
    assert [t.user_attrs[p.TRIAL_WARM_FROM] for t in queued] == ["a#2", "b#0", "a#0"]
    assert all(t.user_attrs[p.TRIAL_ORIGIN] == "warm_start" for t in queued)
    record = optuna.load_study(study_name="new", storage=url).user_attrs[p.STUDY_WARM_START]
    assert [(r["study"], r["complete_trials"], r["queued_trials"]) for r in record] == [
        ("a", 4, [2, 0]), ("b", 2, [0]),  # complete with a finite value: 4 of a's
    ]  # fmt: skip


def test_a_missing_earlier_study_is_one_line_and_creates_nothing(
    compose: Any, tmp_path: Path
) -> None:
    cfg = compose(*BRANIN, "study_name=new", "warm_start=[nowhere]")
    plan = build_plan(cfg, tmp_path / "run")
    with pytest.raises(ConfigError) as caught:
        open_study(plan)
    assert caught.value.key == "warm_start" and "'nowhere'" in str(caught.value)
    assert "new" not in optuna.get_all_study_names(plan.storage)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("[new]", "is this very study"),
        ("[../x]", "invalid name"),
        ("[a@ftp://x]", "not a database URL"),
    ],
)
def test_bad_warm_start_values_are_one_line(compose: Any, tmp_path: Path, value: str,
                                            fragment: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        build_plan(compose(*BRANIN, "study_name=new", f"warm_start={value}"), tmp_path / "run")
    assert fragment in str(caught.value)


def test_a_warm_started_study_runs_the_earlier_best_first_and_says_so(study: Any) -> None:
    first = study(*BRANIN, "study_name=first", "n_trials=6", "scheduler=fifo")
    best = first.summary["best"]
    second = study(*BRANIN, "study_name=second", "n_trials=3", "scheduler=fifo",
                   "warm_start=[first]", "warm_start_trials=1", "parallel_jobs=1")  # fmt: skip
    by_number = {r.number: r for r in second.records}
    assert by_number[0].params == best["params"]
    assert by_number[0].values["value"] == pytest.approx(best["metrics"]["value"])
    (taken,) = second.summary["warm_start"]
    assert (taken["study"], taken["queued_trials"]) == ("first", [best["trial"]])
