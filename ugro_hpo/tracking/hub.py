"""The hub: the one place that tells every listener of a study the same trial events.

The searcher tells the hub each trial's start, results and ending (`ugro_hpo.trial_events`);
the hub tells the driver's own listeners (progress, the failure streak, an objective's guard)
and then each tracker. A driver listener's failure is a bug and propagates; a tracker's is
contained: one that cannot be reached at the start stops the run (or, when
``tracking.required=false``, is skipped with a warning); one that fails mid-study is paused
for a while and the study goes on. Every miss is counted and ends up in the summary, so
nothing is lost silently. A proposal that never became a Ray trial (it violated a
constraint) still gets a tracker run, opened and closed at once with the violated
constraint, so the tracking UI shows where the sampler went.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ugro_hpo.tracking.tracker import StudyInfo, Tracker, TrackerUnavailable
from ugro_hpo.trial_events import TrialEnd, TrialListener, TrialResult, TrialStart

__all__ = ["StudyInfo", "Tracker", "TrackerUnavailable", "Trackers"]

log = logging.getLogger(__name__)
COOLDOWN_S = 30.0
MAX_ERRORS_KEPT = 5
_FAILED = object()


@dataclass
class _Health:
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    paused_until: float = 0.0
    disabled: bool = False
    missed_trials: set[int] = field(default_factory=set)
    trials: set[str] = field(default_factory=set)  # trial ids whose run was opened


class Trackers:
    """Tells every listener and tracker each event, containing and recording the trackers'
    failures."""

    def __init__(
        self,
        trackers: list[Tracker],
        required: bool = True,
        listeners: list[TrialListener] | None = None,
    ) -> None:
        self.trackers = trackers
        self.required = required
        self.listeners = list(listeners or [])
        self.health = {t.name: _Health() for t in trackers}
        self._numbers: dict[str, int] = {}
        self.messages: list[str] = []
        self.rungs: list[int] = []  # the scheduler's rungs (`optimize.rung_steps`), if it has them

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def connect(self) -> None:
        """Reach each backend; a required one that fails stops the run with one line."""
        for tracker in self.trackers:
            try:
                tracker.connect()
            except Exception as exc:
                reason = _reason(exc)
                if self.required:
                    raise TrackerUnavailable(
                        f"{tracker.name}: cannot reach {tracker.location()} ({reason}); "
                        "start it, fix the address, or set tracking.required=false to run without it"
                    ) from None
                log.warning(
                    "%s is unavailable (%s); this study runs without it", tracker.name, reason
                )
                self._record(tracker, f"connect: {reason}")
                self.health[tracker.name].disabled = True

    def study_started(self, info: StudyInfo) -> None:
        for tracker in self._live():
            self._call(tracker, "study_started", tracker.study_started, info)

    def listen(self, *listeners: TrialListener) -> None:
        """Add driver listeners (told each trial event before the trackers, in this order)."""
        self.listeners += listeners

    def trial_started(self, start: TrialStart) -> None:
        for listener in self.listeners:
            listener.trial_started(start)
        self._open(start)

    def _open(self, start: TrialStart) -> None:
        """Each ready tracker opens the trial's run; the runs are linked to each other."""
        self._numbers[start.trial_id] = start.number
        ids: dict[str, str] = {}
        for tracker in self.trackers:
            health = self.health[tracker.name]
            if not self._ready(tracker):
                health.missed_trials.add(start.number)
                continue
            run_id = self._call(
                tracker, "trial_started", tracker.trial_started, start, number=start.number
            )
            if run_id is _FAILED:
                continue
            health.trials.add(start.trial_id)
            if run_id:
                ids[tracker.name] = str(run_id)
        if len(ids) > 1:
            for tracker in self.trackers:
                if start.trial_id in self.health[tracker.name].trials:
                    self._call(tracker, "link", tracker.link, start.trial_id, ids)

    def trial_result(self, result: TrialResult) -> None:
        for listener in self.listeners:
            listener.trial_result(result)
        for tracker in self._with_trial(result.trial_id):
            self._call(tracker, "trial_result", tracker.trial_result, result, number=result.number)

    def trial_finished(self, end: TrialEnd) -> None:
        if self.rungs and end.last_step:
            reached = [r for r in self.rungs if r <= end.last_step]
            end = replace(end, rung=reached[-1] if reached else None)
        for listener in self.listeners:
            listener.trial_finished(end)
        if end.state == "infeasible" and end.trial_id not in self._numbers:
            self._open(TrialStart(end.trial_id, end.number, dict(end.params)))
        for tracker in self._with_trial(end.trial_id):
            self._call(tracker, "trial_finished", tracker.trial_finished, end, number=end.number)
            self.health[tracker.name].trials.discard(end.trial_id)

    def study_finished(self, summary: dict[str, Any], files: list[Path]) -> None:
        for tracker in self._live():
            lines = self._call(tracker, "study_finished", tracker.study_finished, summary, files)
            if lines is not _FAILED:
                self.messages += lines or []

    def close(self) -> None:
        for tracker in self.trackers:
            self._call(tracker, "close", tracker.close)

    def status(self) -> dict[str, Any]:
        """Per tracker: where it writes and what could not be logged (for summary.json)."""
        out = {}
        for tracker in self.trackers:
            health = self.health[tracker.name]
            out[tracker.name] = {
                "location": tracker.location(),
                "ok": health.failures == 0,
                "failures": health.failures,
                "errors": list(health.errors),
                "trials_not_logged": sorted(health.missed_trials),
            }
        return out

    # -- containment ---------------------------------------------------------------------------

    def _live(self) -> list[Tracker]:
        return [t for t in self.trackers if not self.health[t.name].disabled]

    def _ready(self, tracker: Tracker) -> bool:
        health = self.health[tracker.name]
        return not health.disabled and time.monotonic() >= health.paused_until

    def _with_trial(self, trial_id: str) -> list[Tracker]:
        """Trackers that opened this trial's run and are not paused (a paused one misses it)."""
        ready = []
        for tracker in self.trackers:
            health = self.health[tracker.name]
            if trial_id not in health.trials:
                continue
            if self._ready(tracker):
                ready.append(tracker)
            elif trial_id in self._numbers:
                health.missed_trials.add(self._numbers[trial_id])
        return ready

    def _call(
        self, tracker: Tracker, what: str, method: Any, *args: Any, number: int | None = None
    ) -> Any:
        """Call one tracker method; on failure record it, pause the tracker, return _FAILED."""
        try:
            return method(*args)
        except Exception as exc:
            self._record(tracker, f"{what}: {_reason(exc)}")
            health = self.health[tracker.name]
            health.paused_until = time.monotonic() + COOLDOWN_S
            if number is not None:
                health.missed_trials.add(number)
            log.warning(
                "%s failed to log (%s): %s; the study goes on", tracker.name, what, _reason(exc)
            )
            return _FAILED

    def _record(self, tracker: Tracker, message: str) -> None:
        health = self.health[tracker.name]
        health.failures += 1
        if len(health.errors) < MAX_ERRORS_KEPT:
            health.errors.append(message[:500])


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
