"""Live progress of a running study: one refreshing line in a terminal, log lines elsewhere.

Counts come from the trials as they finish (the same stored trials the summary reads), the
number running from Ray Tune's trial list. In a terminal the line is redrawn about twice a
second; when output goes to a file or CI log, a plain line is logged every ``interval_s``
seconds (and once at the end), so a log stays short but always says where the study is.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from typing import Any, TextIO

from ray.tune import Callback

from ugro_hpo.results import trial_state
from ugro_hpo.run_control import NotPersisted

log = logging.getLogger("ugro_hpo.progress")

TERMINAL_REFRESH_S = 0.5


def clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` past an hour."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress(NotPersisted, Callback):
    """Counts by state of ``n_trials``, best value so far, elapsed time and an ETA.

    ``metric`` is the objective whose best value is shown (None for several objectives).
    """

    def __init__(
        self,
        n_trials: int,
        metric: str | None,
        direction: str = "minimize",
        existing: list[Any] | None = None,
        interval_s: float = 30.0,
        stream: TextIO | None = None,
    ) -> None:
        self.n_trials = n_trials
        self.metric = metric
        self.sign = 1.0 if direction == "minimize" else -1.0
        self.counts = dict.fromkeys(("complete", "pruned", "infeasible", "failed"), 0)
        self.best: tuple[float, int] | None = None
        self.running = 0
        self.finished_here = 0
        self.started = time.monotonic()
        self.interval_s = interval_s
        self.stream = stream or sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_render = 0.0
        self._last_text = ""
        for trial in existing or []:
            self._count(trial)

    @property
    def done(self) -> int:
        """Trials that count towards ``n_trials`` (failed ones are run again)."""
        return self.counts["complete"] + self.counts["pruned"] + self.counts["infeasible"]

    def _count(self, frozen: Any) -> bool:
        state = trial_state(frozen)
        if state not in self.counts:
            return False
        self.counts[state] += 1
        if state == "complete" and frozen.values and self.metric:
            value = float(frozen.values[0])
            if self.best is None or self.sign * value < self.sign * self.best[0]:
                self.best = (value, frozen.number)
        return True

    def trial_finished(self, frozen: Any) -> None:
        """Called by the searcher when a trial is stored in its final state."""
        if self._count(frozen):
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
        elapsed = time.monotonic() - self.started
        parts.append(f"{clock(elapsed)} elapsed")
        remaining = max(self.n_trials - self.done, 0)
        if remaining and self.finished_here:
            parts.append(f"ETA {clock(elapsed / self.finished_here * remaining)}")
        return " | ".join(parts)

    def render(self, force: bool = False) -> None:
        now = time.monotonic()
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

    # -- Ray Tune callback hooks ------------------------------------------------------------

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.running = sum(1 for t in trials if t.status == "RUNNING")
        self.render()
