"""The hub tells every tracker the same events and contains their failures: a required tracker
that cannot connect stops the run, an optional one is skipped, one that fails mid-study is
paused and its misses are counted, and nothing of the others is lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ugro_hpo.tracking import hub
from ugro_hpo.tracking.hub import Trackers, TrackerUnavailable
from ugro_hpo.tracking.tracker import Tracker
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart


class Recording(Tracker):
    """A tracker that writes to a list (the hub is what is under test), failing on demand."""

    def __init__(self, name: str, fail_on: set[str] | None = None) -> None:
        self.name = name
        self.fail_on = fail_on or set()
        self.events: list[tuple[str, Any]] = []

    def _do(self, event: str, item: Any = None) -> None:
        if event in self.fail_on:
            raise ConnectionError(f"{self.name} is down during {event}")
        self.events.append((event, item))

    def connect(self) -> None:
        self._do("connect")

    def study_started(self, info: Any) -> None:
        self._do("study_started")

    def trial_started(self, start: TrialStart) -> str:
        self._do("trial_started", start.number)
        return f"{self.name}-{start.number}"

    def link(self, trial_id: str, run_ids: dict[str, str]) -> None:
        self._do("link", run_ids)

    def trial_result(self, result: TrialResult) -> None:
        self._do("trial_result", result.step)

    def trial_finished(self, end: TrialEnd) -> None:
        self._do("trial_finished", end.state)

    def study_finished(self, summary: dict[str, Any], files: list[Path]) -> list[str]:
        self._do("study_finished")
        return [f"{self.name}: done"]

    def location(self) -> str:
        return f"{self.name}://somewhere"


def _trial(trackers: Trackers, trial_id: str, number: int) -> None:
    trackers.trial_started(TrialStart(trial_id, number, {"x": 1}))
    trackers.trial_result(TrialResult(trial_id, number, 1, {"loss": 1.0}))
    trackers.trial_finished(TrialEnd(trial_id, number, "complete"))


def test_every_tracker_hears_every_event_and_runs_are_cross_referenced() -> None:
    a, b = Recording("a"), Recording("b")
    trackers = Trackers([a, b])
    trackers.connect()
    _trial(trackers, "t", 0)
    trackers.study_finished({}, [])
    for tracker, other in ((a, "b"), (b, "a")):
        kinds = [e for e, _ in tracker.events]
        assert kinds == [
            "connect",
            "trial_started",
            "link",
            "trial_result",
            "trial_finished",
            "study_finished",
        ]
        assert dict(tracker.events)["link"][other] == f"{other}-0"
    assert trackers.messages == ["a: done", "b: done"] and trackers.status()["a"]["ok"]


def test_a_required_tracker_that_cannot_connect_stops_the_run() -> None:
    with pytest.raises(
        TrackerUnavailable, match=r"b: cannot reach b://somewhere .*tracking\.required=false"
    ):
        Trackers([Recording("a"), Recording("b", {"connect"})]).connect()


def test_an_optional_tracker_that_cannot_connect_is_skipped() -> None:
    a, b = Recording("a"), Recording("b", {"connect"})
    trackers = Trackers([a, b], required=False)
    trackers.connect()
    _trial(trackers, "t", 0)
    assert b.events == [] and len(a.events) == 4
    assert trackers.status()["b"]["trials_not_logged"] == [0] and not trackers.status()["b"]["ok"]


def test_a_tracker_failing_mid_study_is_paused_and_its_misses_counted(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = [1000.0]
    monkeypatch.setattr(hub.time, "monotonic", lambda: clock[0])
    a, flaky = Recording("a"), Recording("flaky", {"trial_result"})
    trackers = Trackers([a, flaky])
    trackers.connect()
    _trial(trackers, "t0", 0)  # fails on the result: paused from here
    _trial(trackers, "t1", 1)  # paused: missed altogether
    flaky.fail_on.clear()
    clock[0] += hub.COOLDOWN_S + 1
    _trial(trackers, "t2", 2)  # back after the pause
    status = trackers.status()["flaky"]
    assert status["failures"] == 1 and status["trials_not_logged"] == [0, 1]
    assert "ConnectionError: flaky is down during trial_result" in status["errors"][0]
    assert [n for e, n in flaky.events if e == "trial_started"] == [0, 2]
    assert [n for e, n in a.events if e == "trial_started"] == [0, 1, 2]  # the other lost nothing


class Listening:
    """A driver listener (progress, the failure streak, a guard) that writes to a list."""

    def __init__(self, log: list[tuple[str, str, Any]]) -> None:
        self.log = log

    def trial_started(self, start: TrialStart) -> None:
        self.log.append(("listener", "trial_started", start.number))

    def trial_result(self, result: TrialResult) -> None:
        self.log.append(("listener", "trial_result", result.step))

    def trial_finished(self, end: TrialEnd) -> None:
        self.log.append(("listener", "trial_finished", end.state))


def test_the_hub_tells_the_driver_s_listeners_each_event_before_the_trackers() -> None:
    log: list[tuple[str, str, Any]] = []
    flaky = Recording("flaky", {"trial_result"})
    trackers = Trackers([flaky], listeners=[Listening(log)])
    trackers.connect()
    flaky.events = log  # type: ignore[assignment]  # one list: the order across both
    _trial(trackers, "t", 0)
    assert log == [
        ("listener", "trial_started", 0),
        ("trial_started", 0),
        ("listener", "trial_result", 1),  # the tracker failing on it takes nothing from it
        ("listener", "trial_finished", "complete"),
    ]
    assert trackers.status()["flaky"]["failures"] == 1


def test_a_proposal_that_never_ran_gets_a_tracker_run_but_no_start_for_the_listeners() -> None:
    log: list[tuple[str, str, Any]] = []
    a = Recording("a")
    trackers = Trackers([a])
    trackers.listen(Listening(log))
    trackers.connect()
    trackers.trial_finished(
        TrialEnd("infeasible-3", 3, "infeasible", violation="x >= 1", params={"x": 0.5})
    )
    trackers.trial_finished(TrialEnd("not-run-4", 4, "failed", error="not run: x outside"))
    assert log == [("listener", "trial_finished", "infeasible"),
                   ("listener", "trial_finished", "failed")]  # fmt: skip
    assert a.events[1:] == [("trial_started", 3), ("trial_finished", "infeasible")]


def test_the_hub_tells_the_trackers_the_rung_each_trial_reached() -> None:
    heard: list[TrialEnd] = []
    recording = Recording("r")
    recording.trial_finished = heard.append  # type: ignore[method-assign]
    trackers = Trackers([recording])
    trackers.rungs = [1, 2, 4, 8]
    for number, last in enumerate((1, 3, 8, 0)):
        trackers.trial_started(TrialStart(f"t{number}", number, {}))
        trackers.trial_finished(TrialEnd(f"t{number}", number, "pruned", last_step=last))
    assert [(e.last_step, e.rung) for e in heard] == [(1, 1), (3, 2), (8, 8), (0, None)]
