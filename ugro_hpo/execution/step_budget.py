"""``budget.steps``: a study's budget counted in training steps, not trials.

Every step a trial reports counts once (a trial stopped by ASHA at step 4 cost 4 steps, one
that ran to ``max_steps`` cost all of them), steps trained by earlier runs of the same study
included. Once the budget is spent no trial starts and the running ones stop at their next
report; the summary's status is ``budget``. The progress line shows the steps against it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ugro_hpo.optimize import protocol as p
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart

log = logging.getLogger("ugro_hpo")


class StepBudget:
    """A trial listener that adds up the steps trained and trips at ``limit`` (None: never)."""

    def __init__(self, limit: int | None, existing: Iterable[Any] = ()) -> None:
        self.limit = limit
        # Earlier runs' trials, as stored (their last step is the study's record of them).
        self.used = sum(int(t.user_attrs.get(p.TRIAL_LAST_STEP) or 0) for t in existing)
        self._last: dict[str, int] = {}
        self.tripped = limit is not None and self.used >= limit

    def trial_started(self, start: TrialStart) -> None:
        self._last[start.trial_id] = 0

    def trial_result(self, result: TrialResult) -> None:
        before = self._last.get(result.trial_id, 0)
        self._last[result.trial_id] = result.step
        self.used += max(result.step - before, 0)
        if self.limit is not None and self.used >= self.limit and not self.tripped:
            self.tripped = True
            log.info("stopping: budget.steps=%d reached (%d steps trained)", self.limit, self.used)

    def trial_finished(self, end: TrialEnd) -> None:
        self._last.pop(end.trial_id, None)

    def reason(self) -> str:
        return f"budget.steps={self.limit} reached ({self.used} steps trained)"

    def describe(self) -> str:
        """For the progress line: ``240/600 steps``."""
        return f"{self.used}/{self.limit} steps"
