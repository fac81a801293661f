"""How a finished Ray Tune run becomes the study's ending (summary.json's ``status``): one test
per ending, fed with the real objects that decide it (the failure streak, the sweeper's guard)."""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState, create_trial

from ugro_hpo.execution.launcher import StudyEnding, study_ending
from ugro_hpo.execution.run_control import FailureStreak
from ugro_hpo.optimize import protocol as p
from ugro_hpo.sweeper.guard import SweepGuard
from ugro_hpo.trial_events import TrialStart


def _failed(number: int) -> Any:
    trial = create_trial(state=TrialState.FAIL, user_attrs={p.TRIAL_ERROR: "boom"})
    trial.number = number
    return trial


def _tripped_guard() -> SweepGuard:
    guard = SweepGuard(max_failure_rate=0.0, n_jobs=1, n_trials=4)
    guard.trial_started(TrialStart("t0", 0, {}))
    guard.trial_finished(p.trial_end("t0", _failed(0)))
    assert guard.tripped
    return guard


def _tripped_streak() -> FailureStreak:
    streak = FailureStreak(2)
    streak.record(True, "boom")
    streak.record(True, "again")
    return streak


def _ending(**given: Any) -> StudyEnding:
    quiet: dict[str, Any] = {"interrupted": False, "guards": [], "streak": FailureStreak(3),
                             "unsatisfiable": None, "time_budget_s": None, "elapsed_s": 5.0}  # fmt: skip
    return study_ending(**{**quiet, **given})


def test_nothing_ended_it_early_so_it_is_complete() -> None:
    assert _ending() == StudyEnding("complete")
    assert _ending(time_budget_s=60.0, elapsed_s=59.9) == StudyEnding("complete")


def test_a_signal_interrupts_it_whatever_else_happened() -> None:
    ending = _ending(interrupted=True, guards=[_tripped_guard()], streak=_tripped_streak(),
                     unsatisfiable="no feasible trial", time_budget_s=1.0, elapsed_s=9.0)  # fmt: skip
    assert ending == StudyEnding("interrupted", "interrupted by a signal")


def test_an_objectives_guard_stops_it_with_the_guards_reason() -> None:
    guard = _tripped_guard()
    ending = _ending(guards=[SweepGuard(1.0, 1, 4), guard], streak=_tripped_streak())
    assert ending.status == "stopped" and ending.reason == guard.reason
    assert ending.reason is not None and "max_failure_rate=0 exceeded" in ending.reason


def test_the_failure_streak_stops_it() -> None:
    ending = _ending(streak=_tripped_streak(), unsatisfiable="no feasible trial")
    assert ending == StudyEnding("stopped", "the last 2 trials all failed (first error: boom)")


def test_unsatisfiable_constraints_stop_it() -> None:
    ending = _ending(unsatisfiable="20 proposals in a row violated the constraints")
    assert ending == StudyEnding("stopped", "20 proposals in a row violated the constraints")


def test_the_time_budget_ends_it_once_spent() -> None:
    assert _ending(time_budget_s=8.0, elapsed_s=8.0) == StudyEnding(
        "time_budget", "time_budget_s=8 reached"
    )
    assert _ending(time_budget_s=0.0, elapsed_s=1e9) == StudyEnding("complete")  # 0: no budget


def test_a_grid_with_every_point_run_is_complete_and_says_so() -> None:
    assert _ending(grid_points=6) == StudyEnding(
        "complete", "search=grid: all 6 points of the grid have run"
    )
    assert _ending(grid_points=6, interrupted=True).status == "interrupted"  # a signal first
