"""`GuardedSearch`: a trial Ray Tune marks ERROR without telling its search algorithm is failed
through the searcher before the next trial is asked for, once; trials Tune reports normally, or
that still run, are left alone. Built from Tune's own Experiment, Trial and Searcher."""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.experiment import Experiment, Trial
from ray.tune.search import ConcurrencyLimiter, Searcher

from ugro_hpo.execution.lost_trials import LOST
from ugro_hpo.execution.ray_compat import GuardedSearch
from ugro_hpo.optimize import protocol as p


def _trainable(config: dict[str, Any]) -> None:
    return None


class Recording(Searcher):
    """Suggests x = 0, 1, 2, ... and records what Tune tells it about trials that ended."""

    def __init__(self) -> None:
        super().__init__(metric="loss", mode="min")
        self.suggested = 0
        self.completed: list[tuple[str, dict[str, Any] | None, bool]] = []

    def suggest(self, trial_id: str) -> dict[str, Any]:
        self.suggested += 1
        return {"x": self.suggested - 1}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:  # fmt: skip
        self.completed.append((trial_id, result, error))


def _search(max_concurrent: int = 4) -> tuple[GuardedSearch, Recording]:
    recording = Recording()
    search = GuardedSearch(ConcurrencyLimiter(recording, max_concurrent=max_concurrent))
    search.add_configurations([Experiment("guarded", _trainable, num_samples=1000)])
    return search, recording


def _next(search: GuardedSearch) -> Trial:
    trial = search.next_trial()
    assert isinstance(trial, Trial)
    return trial


def test_a_trial_tune_errored_without_a_word_is_failed_once_before_the_next_is_made() -> None:
    search, recording = _search()
    lost, running = _next(search), _next(search)
    lost.set_status(Trial.ERROR)  # what Tune does when the worker's hand-over fails
    assert recording.completed == []
    third = _next(search)
    assert recording.completed == [
        (lost.trial_id, {p.RESULT_STATE: p.Outcome.FAILED.value, p.RESULT_ERROR: LOST}, True)
    ]
    _next(search)
    assert len(recording.completed) == 1  # reported once, not at every request
    assert running.trial_id != third.trial_id and recording.suggested == 4


def test_a_lost_trial_frees_its_place_under_the_concurrency_limit() -> None:
    search, recording = _search(max_concurrent=1)
    lost = _next(search)
    assert search.next_trial() is None  # the limit: one trial at a time
    lost.set_status(Trial.ERROR)
    assert _next(search).trial_id != lost.trial_id  # without the guard Tune would wait forever
    assert [trial_id for trial_id, _, error in recording.completed if error] == [lost.trial_id]


def test_trials_tune_reports_or_that_still_run_are_left_alone(caplog) -> None:  # type: ignore[no-untyped-def]
    search, recording = _search()
    caplog.set_level(logging.WARNING, logger="ugro_hpo.execution.lost_trials")
    ended, pending, running = _next(search), _next(search), _next(search)
    running.set_status(Trial.RUNNING)
    search.on_trial_complete(ended.trial_id, result={"loss": 1.0})
    ended.set_status(Trial.ERROR)  # Tune may mark it so after reporting it: already reported
    _next(search)
    assert recording.completed == [(ended.trial_id, {"loss": 1.0}, False)]
    assert pending.status == Trial.PENDING
    assert LOST not in caplog.text  # no trial was said to be lost
