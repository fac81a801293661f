"""Every scheduler option (conf/scheduler/*.yaml) is built from the app's config with the
search space's metric, and the median rule, the one we adjust, is checked on its own and in a
study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import (
    ASHAScheduler,
    AsyncHyperBandScheduler,
    FIFOScheduler,
    MedianStoppingRule,
    TrialScheduler,
)

from ugro_hpo.config import conf_dir
from ugro_hpo.config.plan import plan_and_parts
from ugro_hpo.execution.launcher import build_components
from ugro_hpo.execution.schedulers import MedianStopping

OPTIONS = sorted(path.stem for path in (conf_dir() / "scheduler").glob("*.yaml"))
BUILT = {
    "asha": ASHAScheduler,
    "auto": ASHAScheduler,
    "fifo": FIFOScheduler,
    "hyperband": AsyncHyperBandScheduler,
    "median": MedianStopping,
}
SPACE = ["objective=synthetic", "search_space=quadratic", "tracking=none", "max_steps=8", "eval_every=2"]  # fmt: skip


def test_every_scheduler_option_is_listed_here() -> None:
    assert sorted(BUILT) == OPTIONS


@pytest.mark.parametrize("option", OPTIONS)
def test_each_scheduler_option_is_built_for_the_spaces_objective(
    compose: Any, tmp_path: Path, option: str
) -> None:
    plan, parts = plan_and_parts(compose(*SPACE, f"scheduler={option}"), tmp_path / "run")
    scheduler = build_components(plan, parts).scheduler
    assert type(scheduler) is BUILT[option]
    if option != "fifo":
        assert scheduler.metric == "value"  # the search space's objective
        assert plan.scheduler["time_attr"] == "step" and plan.scheduler["grace_period"] == 2
    if option in ("asha", "auto", "hyperband"):
        assert plan.scheduler["max_t"] == 8


def test_auto_gives_fifo_to_several_objectives(compose: Any, tmp_path: Path) -> None:
    plan, parts = plan_and_parts(compose("objective=synthetic", "search_space=binh_korn",
                                         "tracking=none", "scheduler=auto"), tmp_path / "run")  # fmt: skip
    assert type(build_components(plan, parts).scheduler) is FIFOScheduler


class Controller:
    """What the median rule asks of Tune's controller: the live trials."""

    def __init__(self, *live: Trial) -> None:
        self.live = list(live)

    def get_live_trials(self) -> list[Trial]:
        return self.live


def _trial(trial_id: str) -> Trial:
    return Trial("unused", trial_id=trial_id, stub=True)


def _rule(cls: type[MedianStoppingRule]) -> MedianStoppingRule:
    return cls(time_attr="step", metric="loss", mode="min", grace_period=1, min_samples_required=2)


@pytest.mark.parametrize("cls", [MedianStoppingRule, MedianStopping])
def test_the_median_rule_continues_where_ray_pauses_and_still_stops_a_laggard(cls: Any) -> None:
    rule = _rule(cls)
    first, second, third, waiting = (_trial(n) for n in ("a", "b", "c", "w"))
    controller = Controller(first, second, third, waiting)  # "w" is pending: Ray would yield to it
    alone = rule.on_trial_result(controller, first, {"step": 1, "loss": 1.0})
    assert alone == (TrialScheduler.PAUSE if cls is MedianStoppingRule else TrialScheduler.CONTINUE)
    assert rule.on_trial_result(controller, second, {"step": 1, "loss": 2.0}) == alone
    assert rule.on_trial_result(controller, third, {"step": 1, "loss": 9.0}) == TrialScheduler.STOP  # fmt: skip


def test_a_median_study_stops_trials_that_fall_behind(study: Any) -> None:
    result = study(*SPACE, "scheduler=median", "scheduler.min_samples_required=2", "n_trials=8",
                   "parallel_jobs=1", "search=random")  # fmt: skip
    assert result.summary["finished"] == 8
    pruned = [r for r in result.records if r.state == "pruned"]
    assert pruned, [(r.state, r.value) for r in result.records]
    assert all(r.last_step < 8 for r in pruned)
