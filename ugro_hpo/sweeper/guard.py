"""The sweeper's own reasons to end a sweep, judged in the driver as trials end and report.

- ``max_failure_rate``, as the Optuna sweeper has it: it judges each batch of ``n_jobs`` trials
  and stops when the batch's failed share exceeds the rate. Trials here do not run in batches,
  so those that end are judged in groups of ``n_jobs`` in the order they end (the last group
  as large as the trials still to run), and the sweep stops as soon as a group's failures are
  more than the rate allows, not when the group is complete. 0.0, the default, stops at the
  first failure; 1.0 never stops (the failure streak still does).
- A scheduler that watches a metric the trials do not report stops nothing: the first report
  of a trial without it ends the sweep with a line that names what was reported.

The launcher asks ``tripped`` to end Ray Tune's run; ``reason`` and ``exit_code`` say why.
"""

from __future__ import annotations

from ugro_hpo.optimize import protocol as p
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart

UNUSABLE_RETURN = "UnusableReturn:"
"""How the error of a trial whose task function returned nothing usable begins (`job`)."""
FAILURES_EXIT_CODE = 3
"""A sweep stopped by its trials' failures (as the command line's failure streak)."""


class SweepGuard:
    """Listens to the trial events (started, result, finished; see `ugro_hpo.trial_events`)."""

    def __init__(self, max_failure_rate: float, n_jobs: int, n_trials: int,
                 scheduler_metric: str | None = None, scheduler: str = "",
                 ran_before: int = 0) -> None:  # fmt: skip
        self.rate = float(max_failure_rate)
        self.n_jobs = max(1, int(n_jobs))
        self.left = max(1, int(n_trials) - int(ran_before))
        self.scheduler_metric = scheduler_metric
        self.scheduler = scheduler
        self.group_size = min(self.n_jobs, self.left)
        self.ended = self.failed = 0
        self.errors: list[str] = []
        self.started: set[str] = set()
        self.reported: set[str] = set()
        self.reason: str | None = None
        self.exit_code = FAILURES_EXIT_CODE

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def trial_started(self, start: TrialStart) -> None:
        self.started.add(start.trial_id)

    def trial_result(self, result: TrialResult) -> None:
        if result.trial_id in self.reported or self.tripped:
            return
        self.reported.add(result.trial_id)
        watched = self.scheduler_metric
        if watched is not None and watched not in result.metrics:
            self.reason = missing_metric_message(self.scheduler, watched, sorted(result.metrics))
            self.exit_code = 2

    def trial_finished(self, end: TrialEnd) -> None:
        if end.trial_id not in self.started or self.tripped:
            return
        outcome = end.state
        error = str(end.error or "no error recorded")
        # A return value the study cannot use fails the trial, but it is no failure of the
        # app: the Optuna sweeper does not count it either.
        failed = outcome == p.Outcome.FAILED and not error.startswith(UNUSABLE_RETURN)
        self.ended += 1
        if failed:
            self.failed += 1
            self.errors.append(f"trial {end.number}: {error}")
        elif outcome in p.RAN:
            self.left = max(1, self.left - 1)
        if self.failed / self.group_size > self.rate:
            self.reason = (
                f"hydra.sweeper.max_failure_rate={self.rate:g} exceeded: {self.failed} of "
                f"{self.group_size} trials failed ({self.errors[0]})"
            )
        elif self.ended >= self.group_size:  # the next group
            self.group_size = min(self.n_jobs, self.left)
            self.ended = self.failed = 0
            self.errors.clear()


def missing_metric_message(scheduler: str, watched: str, reported: list[str]) -> str:
    """One line: the scheduler's metric is not among those a trial reported."""
    names = ", ".join(reported) or "none"
    return (
        f"hydra.sweeper.scheduler={scheduler} watches the metric {watched!r}, which the first "
        f"report of a trial does not contain (it reported: {names}); name the reported metric "
        f"with hydra.sweeper.metric=..., or report {watched!r} with ugro_hpo.report(step, "
        f"{watched}=...)"
    )
