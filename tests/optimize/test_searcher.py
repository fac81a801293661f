"""The searcher on a real Optuna study in SQLite, driven as Ray Tune drives it (suggest, results,
completion), without Ray: what it stores for each outcome, the shared budget, infeasible
proposals replaced without a trial, and its state as plain JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.samplers import grid_sampler
from ugro_hpo.optimize.searcher import StudySearcher
from ugro_hpo.optimize.storage import OpenedStudy, open_storage
from ugro_hpo.security.redaction import register
from ugro_hpo.space import parse_search_space
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart

FINISHED = "FINISHED"


class Events:
    """Records what the searcher tells its listener."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.metrics: dict[tuple[str, int], dict[str, float]] = {}

    def trial_started(self, start: TrialStart) -> None:
        self.log.append(("started", start.trial_id))

    def trial_result(self, result: TrialResult) -> None:
        self.log.append(("result", (result.trial_id, result.step)))
        self.metrics[(result.trial_id, result.step)] = result.metrics

    def trial_finished(self, end: TrialEnd) -> None:
        self.log.append(("finished", (end.trial_id, end.state)))


def _space(
    text: str = "parameters: {x: {type: float, min: 0, max: 1}}\nobjectives: [{name: loss}]\n",
):
    return parse_search_space(yaml.safe_load(text), "test")


def _opened(tmp_path: Path, space: Any, sampler: Any = None) -> OpenedStudy:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    directions = [o.direction for o in space.objectives]
    study = optuna.create_study(study_name="s", storage=storage, directions=directions,
                                sampler=sampler or optuna.samplers.RandomSampler(seed=0))  # fmt: skip
    return OpenedStudy(study, storage, storage.get_study_id_from_name("s"), False, 0)


def _searcher(tmp_path: Path, space: Any = None, n_trials: int = 4, **kwargs: Any) -> StudySearcher:
    space = space or _space()
    events = Events()
    return StudySearcher(_opened(tmp_path, space, kwargs.pop("sampler", None)), space,
                         n_trials=n_trials, max_steps=3, events=events, **kwargs)  # fmt: skip


def _complete(searcher: StudySearcher, ray_id: str, loss: float) -> None:
    searcher.on_trial_complete(ray_id, {"loss": loss, p.STEP: 3, p.RESULT_STATE: "complete"})


def test_a_suggestion_is_a_claimed_optuna_trial(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    config = searcher.suggest("t1")
    assert set(config) == {"x", p.CONFIG_EXTRAS} and config[p.CONFIG_EXTRAS] == {"number": 0}
    (trial,) = searcher.study.trials
    assert trial.state == TrialState.RUNNING and trial.params == {"x": config["x"]}
    assert trial.user_attrs[p.TRIAL_RAY_ID] == "t1" and ":" in trial.user_attrs[p.TRIAL_DRIVER]
    assert searcher.events.log == [("started", "t1")]
    assert searcher.running() == ["t1"]


def test_an_extension_samples_more_parameters_into_each_proposal(tmp_path: Path) -> None:
    """The Hydra sweeper's custom_search_space: a function suggests on the trial itself."""
    searcher = _searcher(tmp_path, extend=lambda trial: trial.suggest_int("extra.depth", 1, 3))
    config = searcher.suggest("t1")
    assert set(config) == {"x", "extra.depth", p.CONFIG_EXTRAS}
    assert searcher.study.trials[0].params == {k: config[k] for k in ("x", "extra.depth")}


def test_each_outcome_is_stored_as_what_it_was(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    for ray_id in ("done", "stopped", "broken", "dead"):
        searcher.suggest(ray_id)
    searcher.on_trial_result("done", {"loss": 0.5, p.STEP: 1})
    _complete(searcher, "done", 0.25)
    searcher.on_trial_result("stopped", {"loss": 0.9, p.STEP: 1})
    searcher.on_trial_complete("stopped", {"loss": 0.8, p.STEP: 2})  # a scheduler stopped it
    searcher.on_trial_complete(
        "broken", {p.RESULT_STATE: "failed", p.RESULT_ERROR: "ValueError: x", p.STEP: 1}
    )
    searcher.on_trial_complete("dead", error=True)
    done, stopped, broken, dead = searcher.study.trials
    assert (done.state, done.values, done.user_attrs[p.TRIAL_METRICS]) == (
        TrialState.COMPLETE,
        [0.25],
        {"loss": 0.25},
    )
    assert done.intermediate_values == {1: 0.5} and done.user_attrs[p.TRIAL_LAST_STEP] == 3
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {1: 0.9, 2: 0.8}
    assert p.outcome_of(stopped) == p.Outcome.PRUNED and stopped.user_attrs[p.TRIAL_LAST_STEP] == 2
    assert broken.state == TrialState.FAIL and broken.user_attrs[p.TRIAL_ERROR] == "ValueError: x"
    assert (
        dead.state == TrialState.FAIL and "worker process failed" in dead.user_attrs[p.TRIAL_ERROR]
    )
    ended = [item for kind, item in searcher.events.log if kind == "finished"]
    assert ended == [
        ("done", "complete"),
        ("stopped", "pruned"),
        ("broken", "failed"),
        ("dead", "failed"),
    ]
    assert searcher.running() == []


@pytest.mark.parametrize("ending", ["pruned", "stopped at its last step"])
def test_the_step_a_trial_is_stopped_at_reaches_the_study_and_the_listeners(
    tmp_path: Path, ending: str
) -> None:
    """Ray Tune gives the result a scheduler stops a trial on to on_trial_complete only."""
    searcher = _searcher(tmp_path)
    searcher.suggest("t")
    searcher.on_trial_result("t", {"loss": 0.9, p.STEP: 1})
    last = 2 if ending == "pruned" else 3  # max_steps is 3
    searcher.on_trial_complete("t", {"loss": 0.7, "other": 1.5, p.STEP: last})
    (trial,) = searcher.study.trials
    assert trial.intermediate_values == {1: 0.9, last: 0.7}
    results = [item for kind, item in searcher.events.log if kind == "result"]
    assert results == [("t", 1), ("t", last)]
    assert searcher.events.metrics[("t", last)] == {"loss": 0.7, "other": 1.5}


def test_a_step_already_heard_is_not_told_twice(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("t")
    searcher.on_trial_result("t", {"loss": 0.9, p.STEP: 1})
    searcher.on_trial_complete("t", {"loss": 0.9, p.STEP: 1})  # e.g. the run was stopped
    assert [item for kind, item in searcher.events.log if kind == "result"] == [("t", 1)]


def test_a_complete_result_without_its_metric_fails_the_trial(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("t")
    searcher.on_trial_complete("t", {p.RESULT_STATE: "complete", p.STEP: 3, "other": 1.0})
    (trial,) = searcher.study.trials
    assert (
        trial.state == TrialState.FAIL
        and "lacks finite ['loss']" in trial.user_attrs[p.TRIAL_ERROR]
    )


def test_error_text_is_scrubbed_before_the_study_keeps_it(tmp_path: Path) -> None:
    register("known-secret-123456")
    searcher = _searcher(tmp_path)
    searcher.suggest("t")
    text = "RuntimeError: login failed: password=hunter2 with known-secret-123456 " + "x" * 5000
    searcher.on_trial_complete("t", {p.RESULT_STATE: "failed", p.RESULT_ERROR: text})
    error = searcher.study.trials[0].user_attrs[p.TRIAL_ERROR]
    assert "hunter2" not in error and "known-secret" not in error and len(error) <= 2000


def test_the_budget_is_the_study_s_trials_that_ran(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path, n_trials=2)
    searcher.suggest("a")
    searcher.suggest("b")
    assert searcher.suggest("c") is None  # two running: wait, one may fail
    searcher.on_trial_complete("a", {p.RESULT_STATE: "failed", p.RESULT_ERROR: "boom"})
    assert isinstance(searcher.suggest("c"), dict)  # the failed one is replaced
    _complete(searcher, "b", 1.0)
    _complete(searcher, "c", 2.0)
    assert searcher.suggest("d") == FINISHED


def test_a_halted_study_asks_for_nothing(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path, halted=lambda: True)
    assert searcher.suggest("t") == FINISHED and searcher.study.trials == []


HALF = """
parameters: {x: {type: float, min: 0, max: 1}}
constraints: ["x <= 0.5"]
objectives: [{name: loss}]
"""


def test_infeasible_proposals_are_stored_and_replaced_without_a_trial(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path, _space(HALF), n_trials=6)
    for index in range(6):
        config = searcher.suggest(f"t{index}")
        assert config["x"] <= 0.5  # what Ray gets to run is always feasible
        _complete(searcher, f"t{index}", config["x"])
    assert searcher.suggest("more") == FINISHED
    trials = searcher.study.trials
    infeasible = [t for t in trials if p.outcome_of(t) == p.Outcome.INFEASIBLE]
    assert infeasible and len(trials) == 6 + len(infeasible)
    for trial in infeasible:
        # never ran: pruned, with no value, no step, and the violated constraint
        assert trial.state == TrialState.PRUNED and trial.params["x"] > 0.5
        assert trial.values is None and trial.intermediate_values == {}
        assert (
            trial.constraints == {"c0": 1.0} and trial.user_attrs[p.TRIAL_VIOLATION] == "x <= 0.5"
        )
    feasible_done = [t for t in trials if p.outcome_of(t) == p.Outcome.COMPLETE]
    assert all(t.constraints == {"c0": 0.0} for t in feasible_done)
    # what every other tool reads: the best trial is one that ran, and only those have values
    stored = optuna.load_study(study_name="s", storage=searcher.opened.storage)
    assert p.outcome_of(stored.best_trial) == p.Outcome.COMPLETE
    assert {t.number for t in stored.trials if t.values is not None} == {
        t.number for t in feasible_done
    }
    assert stored.get_trials(states=(TrialState.COMPLETE,)) == feasible_done
    started = [item for kind, item in searcher.events.log if kind == "started"]
    assert len(started) == 6  # no trial started for an infeasible point


def test_constraints_that_cannot_hold_end_the_study(tmp_path: Path) -> None:
    space = _space(HALF.replace("x <= 0.5", "x > 2"))
    searcher = _searcher(tmp_path, space, max_infeasible_in_a_row=5)
    assert searcher.suggest("t") == FINISHED
    assert (
        len(searcher.study.trials) == 5 and "look unsatisfiable (x > 2)" in searcher.unsatisfiable
    )


def test_a_queued_value_outside_the_space_is_not_run(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.study.enqueue_trial({"x": 1e9}, skip_if_exists=False)  # e.g. by another driver
    with pytest.warns(UserWarning, match="out of range"):  # Optuna hands it over all the same
        config = searcher.suggest("t")
    first, second = searcher.study.trials
    assert (
        first.state == TrialState.FAIL
        and "outside the search space" in first.user_attrs[p.TRIAL_ERROR]
    )
    assert config[p.CONFIG_EXTRAS]["number"] == second.number and 0 <= config["x"] <= 1


def test_a_grid_search_ends_when_every_point_was_proposed(tmp_path: Path) -> None:
    space = _space(
        "parameters: {c: {type: categorical, choices: [a, b]}}\nobjectives: [{name: loss}]\n"
    )
    searcher = _searcher(tmp_path, space, n_trials=10, sampler=grid_sampler(space, seed=0))
    seen = {searcher.suggest("1")["c"], searcher.suggest("2")["c"]}
    assert seen == {"a", "b"} and searcher.suggest("3") == FINISHED


def test_several_objectives_are_stored_as_several_values(tmp_path: Path) -> None:
    space = _space("parameters: {x: {type: float, min: 0, max: 1}}\n"
                   "objectives: [{name: a}, {name: b, direction: maximize}]\n")  # fmt: skip
    searcher = _searcher(tmp_path, space)
    searcher.suggest("t")
    searcher.on_trial_result("t", {"a": 1.0, "b": 2.0, p.STEP: 1})  # no intermediate values
    searcher.on_trial_complete("t", {"a": 1.0, "b": 2.0, p.STEP: 3, p.RESULT_STATE: "complete"})
    (trial,) = searcher.study.trials
    assert trial.values == [1.0, 2.0] and trial.intermediate_values == {}


def test_abandoning_fails_running_trials_and_queues_their_points_once(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    config = searcher.suggest("t")
    searcher.abandon(p.INTERRUPTED)
    first, queued = searcher.study.trials
    assert first.state == TrialState.FAIL and first.user_attrs[p.TRIAL_ERROR] == p.INTERRUPTED
    assert (
        queued.state == TrialState.WAITING and queued.user_attrs[p.TRIAL_RETRY_OF] == first.number
    )
    assert searcher.suggest("again")["x"] == config["x"]  # the same point runs once more


def test_its_state_is_plain_json_and_restores(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("t1")
    searcher.suggest("t2")
    _complete(searcher, "t1", 1.0)
    checkpoint = tmp_path / "searcher-state.json"
    searcher.save(str(checkpoint))
    assert json.loads(checkpoint.read_text()) == {
        "study_name": "s",
        "trials": {"t1": 0, "t2": 1},
        "ended": ["t1"],
    }
    fresh = StudySearcher(searcher.opened, searcher.space, n_trials=4, max_steps=3)
    fresh.restore(str(checkpoint))
    assert fresh.running() == ["t2"]
    _complete(fresh, "t2", 0.5)
    assert [t.state for t in searcher.study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert searcher.__getstate__() == {}  # Ray's pickle of it holds no connection
