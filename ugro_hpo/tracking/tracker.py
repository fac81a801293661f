"""What a tracker is: a listener of the trial events (`ugro_hpo.trial_events`) that also hears
of the study (it starts, it finishes) and connects to a backend first. Trackers import their
libraries only when they connect; the hub (`hub.Trackers`) calls them and contains failures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugro_hpo.errors import UserError
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart


class TrackerUnavailable(UserError):
    """A required tracker could not be reached before the study started."""


@dataclass
class StudyInfo:
    """The study as trackers describe it (parent run, groups, configs)."""

    study_name: str
    resumed: bool
    n_trials: int
    max_steps: int
    sampler: str
    scheduler: str
    search_space: str
    objectives: list[dict[str, str]]
    describe: dict[str, str]  # the objective's own description: model and dataset, function, ...
    settings: dict[str, Any]  # the fixed configuration worth logging once per study
    tags: dict[str, str]  # the user's own labels (tags.*), secrets already redacted
    run_dir: Path
    study: Any  # the optuna.Study, for attributes that must survive a resume


class Tracker(ABC):
    """One tracking backend, a `TrialListener`. Methods may raise; the hub contains the failure."""

    name = "tracker"

    @abstractmethod
    def connect(self) -> None:
        """Reach the backend before anything else happens (raise if it cannot be reached)."""

    @abstractmethod
    def study_started(self, info: StudyInfo) -> None: ...

    @abstractmethod
    def trial_started(self, start: TrialStart) -> str | None:
        """Open the trial's run; return its id so other trackers can point to it."""

    def link(self, trial_id: str, run_ids: dict[str, str]) -> None:
        """Record the ids other trackers gave the same trial (for cross-references)."""
        return None

    @abstractmethod
    def trial_result(self, result: TrialResult) -> None: ...

    @abstractmethod
    def trial_finished(self, end: TrialEnd) -> None: ...

    @abstractmethod
    def study_finished(self, summary: dict[str, Any], files: list[Path]) -> list[str]:
        """Attach the study's results; return lines to show the user (where to look, how to sync)."""

    def close(self) -> None:
        """Finish anything still open (interrupts, errors); must be safe to call twice."""
        return None

    def location(self) -> str:
        """Where this tracker writes, with credentials redacted."""
        return ""
