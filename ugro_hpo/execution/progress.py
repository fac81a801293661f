"""Live progress of a running study: one refreshing line in a terminal, log lines elsewhere.

Counts come from the trials as they finish (the same stored trials the summary reads) and as
they start, both told by the searcher. In a terminal the line is redrawn about twice a second;
when output goes to a file or CI log, a plain line is logged every ``interval_s`` seconds,
whether or not a trial reported meanwhile (and once at the end), so a log stays short but
always says where the study is.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ugro_hpo.optimize import protocol as p
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart

log = logging.getLogger("ugro_hpo.execution.progress")

TERMINAL_REFRESH_S = 0.5


def clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` past an hour."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Counts by state of ``n_trials``, best value so far, elapsed time and an ETA.

    ``metric`` is the objective whose best value is shown (None for several objectives).
    ``clock`` is where elapsed time and the interval between lines are read (a test turns it
    by hand).
    """

    def __init__(
        self,
        n_trials: int,
        metric: str | None,
        direction: str = "minimize",
        existing: list[Any] | None = None,
        *,
        interval_s: float,  # the plan's progress_interval_s (its default is the settings')
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.n_trials = n_trials
        self.metric = metric
        self.sign = 1.0 if direction == "minimize" else -1.0
        self.counts = dict.fromkeys(("complete", "pruned", "infeasible", "failed"), 0)
        self.best: tuple[float, int] | None = None
        self._running: set[str] = set()
        self.finished_here = 0
        self.started = clock()
        self.interval_s = interval_s
        self.budget: Any = None  # a `StepBudget` when budget.steps is set: shown in the line
        self.stream = stream or sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_render = 0.0
        self._last_text = ""
        self._lock = threading.Lock()  # a ticking thread renders too (see `tick`)
        for trial in existing or []:
            self._count(p.trial_end(str(trial.number), trial))

    @property
    def done(self) -> int:
        """Trials that ran and count towards ``n_trials`` (failed ones are run again,
        infeasible proposals never ran)."""
        return self.counts["complete"] + self.counts["pruned"]

    @property
    def running(self) -> int:
        return len(self._running)

    def _count(self, end: TrialEnd) -> bool:
        state = end.state
        if state not in self.counts:
            return False
        self.counts[state] += 1
        if state == "complete" and end.values and self.metric:
            value = end.values[0]
            if self.best is None or self.sign * value < self.sign * self.best[0]:
                self.best = (value, end.number)
        return True

    # -- the trial events (`ugro_hpo.trial_events`), told by the hub ----------------------------

    def trial_started(self, start: TrialStart) -> None:
        self._running.add(start.trial_id)
        self.render()

    def trial_result(self, result: TrialResult) -> None:
        self.render()

    def trial_finished(self, end: TrialEnd) -> None:
        """A trial stored in its final state (or a proposal that never ran)."""
        self._running.discard(end.trial_id)
        if self._count(end) and end.state in p.RAN:
            self.finished_here += 1
        self.render()

    def text(self) -> str:
        c = self.counts
        parts = [
            f"{self.done}/{self.n_trials} done ({c['complete']} complete, {c['pruned']} pruned, "
            f"{c['infeasible']} infeasible)",
            f"{self.running} running",
            f"{c['failed']} failed",
        ]
        if self.best is not None:
            parts.append(f"best {self.metric} {self.best[0]:.4g} (trial {self.best[1]})")
        if self.budget is not None:
            parts.append(self.budget.describe())
        elapsed = self.clock() - self.started
        parts.append(f"{clock(elapsed)} elapsed")
        remaining = max(self.n_trials - self.done, 0)
        if remaining and self.finished_here:
            parts.append(f"ETA {clock(elapsed / self.finished_here * remaining)}")
        return " | ".join(parts)

    def tick(self) -> None:
        """Called every second by a thread of the launcher: a line is due even when no trial
        reported for a while (a slow first evaluation must not look like a hang)."""
        self.render()

    def render(self, force: bool = False) -> None:
        with self._lock:
            self._render(force)

    def _render(self, force: bool) -> None:
        now = self.clock()
        every = TERMINAL_REFRESH_S if self.terminal else self.interval_s
        if not force and now - self._last_render < every:
            return
        self._last_render = now
        text = self.text()
        if self.terminal:
            width = shutil.get_terminal_size((120, 20)).columns
            self.stream.write("\r\x1b[2K" + text[: width - 1])
            self.stream.flush()
        elif force or text != self._last_text:
            log.info("progress: %s", text)
        self._last_text = text

    def close(self) -> None:
        """The final state, and the terminal line left in place."""
        self.render(force=True)
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()
