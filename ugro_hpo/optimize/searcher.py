"""Ray Tune's searcher over an Optuna study, through Optuna's public ask-and-tell API.

Ray Tune asks for each trial's configuration (`suggest`) and reports what the trial did
(`on_trial_result`, `on_trial_complete`). Here a suggestion is an Optuna trial asked from the
study and sampled define-by-run from the search space, and each ending is told to the study as
what it was (see `protocol`). A proposal that violates a constraint is told at once as
infeasible and replaced, so it costs no Ray trial; a long run of them ends the study. The
budget, ``n_trials`` trials that ran, belongs to the study and is shared by every driver on it.

The searcher is also where the driver hears of every trial: it tells each start, result and
ending (`ugro_hpo.trial_events`) to one listener, the hub that tells progress, the trackers and
the rest, so no Ray callback is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from ugro_hpo.optimize import optuna_compat as compat
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.checkpoints import CheckpointPlace, StoredCheckpoint
from ugro_hpo.optimize.storage import OpenedStudy, driver_id, fail_interrupted, recover_orphans
from ugro_hpo.security.digests import scrub_then_cut
from ugro_hpo.security.redaction import redact_text
from ugro_hpo.space import SearchSpace
from ugro_hpo.trial_events import TrialListener, TrialResult, TrialStart
from ugro_hpo.validation import finite_number

log = logging.getLogger(__name__)
ORPHAN_CHECK_S = 5.0
MAX_TEXT = 2000
MAX_INFEASIBLE_IN_A_ROW = 100


class StudySearcher(Searcher):
    """Suggests trials from an Optuna study and stores how each one ended.

    Ray pickles its searcher into the experiment directory; this one holds a live database
    connection, so it pickles to nothing (the study is the record; see `get_state`).
    """

    def __init__(
        self,
        opened: OpenedStudy,
        space: SearchSpace,
        n_trials: int,
        max_steps: int,
        events: TrialListener | None = None,
        halted: Callable[[], bool] = lambda: False,
        trial_logs: str = "Ray's experiment directory",
        max_infeasible_in_a_row: int = MAX_INFEASIBLE_IN_A_ROW,
        extend: Callable[[optuna.Trial], None] | None = None,
        checkpoints: CheckpointPlace | None = None,
    ) -> None:
        metrics = space.metric_names
        modes = [o.mode for o in space.objectives]
        multi = space.is_multi_objective
        # Ray's Searcher takes a list of metrics and modes for several objectives.
        super().__init__(
            metric=metrics if multi else metrics[0],  # type: ignore[arg-type]
            mode=modes if multi else modes[0],  # type: ignore[arg-type]
        )
        self.opened = opened
        self.study = opened.study
        self.space = space
        self.n_trials = n_trials
        self.max_steps = max_steps
        self.events = events
        self.halted = halted
        self.trial_logs = trial_logs
        self.max_infeasible_in_a_row = max_infeasible_in_a_row
        self.extend = extend  # samples more parameters into a feasible proposal, if given
        self.checkpoints = checkpoints  # where trials' checkpoints go (None: not recorded)
        self.unsatisfiable: str | None = None  # why the study ended early, if it did
        self.grid_points: int | None = None  # a grid search that has proposed all its points
        self.infeasible_in_a_row = 0
        self._driver = driver_id()
        self._numbers: dict[str, int] = {}  # Ray trial id -> Optuna trial number
        self._storage_ids: dict[str, int] = {}  # Ray trial id -> the trial's id in storage
        self._last_step: dict[str, int] = {}  # Ray trial id -> the last step recorded
        self._ended: set[str] = set()
        self._orphan_check = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {}

    # -- suggestions -------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # FINISHED is a str
        """The next trial's configuration, None to wait, or FINISHED.

        The budget is the study's: stop when ``n_trials`` have run, wait while enough are
        running (one may still fail and need replacing).
        """
        if self.unsatisfiable or self.halted():
            return str(Searcher.FINISHED)
        ran, running = self.opened.ran_and_running()
        if ran >= self.n_trials:
            return str(Searcher.FINISHED)
        if ran + running >= self.n_trials:
            self._recover_orphans()  # a trial nobody runs must not block the study
            return None
        while True:
            if self._grid_exhausted():
                return str(Searcher.FINISHED)
            trial = self.study.ask()
            proposal = self.space.sample(trial)
            if proposal.outside:
                self._tell_not_run(trial, proposal.outside)
            elif proposal.violation:
                self._tell_infeasible(trial, proposal.violation)
            else:
                break
            if self.unsatisfiable:
                return str(Searcher.FINISHED)
        self.infeasible_in_a_row = 0
        params = dict(proposal.params)
        if self.extend is not None:
            self.extend(trial)  # its own trial.suggest_* calls (the Hydra sweeper's hook)
            params.update({k: v for k, v in trial.params.items() if k not in params})
        if sum(self.opened.ran_and_running()) > self.n_trials:
            self._stand_down(trial)  # another driver asked at the same moment
            return None
        self._claim(trial_id, trial)
        if self.events is not None:
            self.events.trial_started(TrialStart(trial_id, trial.number, params))
        extras: dict[str, Any] = {"number": trial.number}
        if self.checkpoints is not None:
            extras.update(self.checkpoints.resume(self.opened, trial, self.max_steps))
        return {**params, p.CONFIG_EXTRAS: extras}

    def _claim(self, trial_id: str, trial: optuna.Trial) -> None:
        """Mark the trial as ours and alive (another driver never takes it for stale)."""
        trial.set_user_attr(p.TRIAL_RAY_ID, trial_id)
        trial.set_user_attr(p.TRIAL_DRIVER, self._driver)
        storage_id = self.opened.trial_id(trial.number)
        compat.record_heartbeat(self.opened.storage, storage_id)
        self._numbers[trial_id] = trial.number
        self._storage_ids[trial_id] = storage_id

    def _tell_not_run(self, trial: optuna.Trial, why: str) -> None:
        """A proposal with a value outside the space (queued by another driver): not run."""
        trial.set_user_attr(p.TRIAL_ERROR, _text(f"not run: {why}"))
        frozen = self.study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d not run: %s", trial.number, _text(why))
        if self.events is not None:
            self.events.trial_finished(p.trial_end(f"not-run-{trial.number}", frozen))

    def _tell_infeasible(self, trial: optuna.Trial, violation: str) -> None:
        """Store a proposal that violates a constraint: pruned, with no value and no step (it
        never ran), and with its constraint values (set by the sampling), so samplers that
        model feasibility learn the region (see `protocol`)."""
        trial.set_user_attr(p.TRIAL_STATE, p.Outcome.INFEASIBLE.value)
        trial.set_user_attr(p.TRIAL_VIOLATION, _text(violation))
        trial.set_user_attr(p.TRIAL_LAST_STEP, 0)  # no step trained
        frozen = self.study.tell(trial, state=TrialState.PRUNED)
        if self.events is not None:
            self.events.trial_finished(p.trial_end(f"infeasible-{trial.number}", frozen))
        self.infeasible_in_a_row += 1
        if self.infeasible_in_a_row >= self.max_infeasible_in_a_row:
            shown = "; ".join(c.source for c in self.space.constraints)
            self.unsatisfiable = (
                f"{self.infeasible_in_a_row} proposals in a row violated the constraints, which "
                f"look unsatisfiable ({shown})"
            )
            log.error("stopping: %s", self.unsatisfiable)

    def _grid_exhausted(self) -> bool:
        """A grid search ends when every point of the grid has been proposed."""
        size = getattr(self.study.sampler, "grid_size", None)
        if size is None:
            return False
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        seen = {tuple(sorted(t.params.items())) for t in self.opened.trials(states)}
        if len(seen) < int(size):
            return False
        self.grid_points = int(size)
        return True

    def _stand_down(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(p.TRIAL_ERROR, p.STOOD_DOWN)
        self.study.tell(trial, state=TrialState.FAIL)

    def _recover_orphans(self) -> None:
        now = time.monotonic()
        if now - self._orphan_check >= ORPHAN_CHECK_S:
            self._orphan_check = now
            recover_orphans(self.opened)

    # -- the driver's other duties -------------------------------------------------------------

    def running(self) -> list[str]:
        """Ray trial ids asked and not ended yet (safe from another thread)."""
        return [t for t in self._numbers.copy() if t not in self._ended]

    def heartbeat(self) -> None:
        """Tell the storage our running trials are alive; fail other drivers' stale ones."""
        for trial_id in self.running():
            compat.record_heartbeat(self.opened.storage, self._storage_ids[trial_id])
        optuna.storages.fail_stale_trials(self.study)

    def abandon(self, reason: str) -> None:
        """The study is stopping: fail the trials still running (their points are queued again)."""
        for trial_id in self.running():
            self._ended.add(trial_id)
            storage_id = self._storage_ids[trial_id]
            fail_interrupted(self.opened, storage_id, reason)
            if self.events is not None:
                frozen = compat.trial_by_id(self.opened.storage, storage_id)
                self.events.trial_finished(p.trial_end(trial_id, frozen))

    def retrying(self, trial_id: str) -> None:
        """Ray runs this trial again after its worker died (``max_failures``): the retry goes on
        from the trial's last checkpoint (`execution.checkpoints.restore_ray_retry`), whose step
        the study records as where it resumed (none recorded: it starts from step 0)."""
        if trial_id in self._ended or trial_id not in self._numbers:
            return
        frozen = compat.trial_by_id(self.opened.storage, self._storage_ids[trial_id])
        record = frozen.user_attrs.get(p.TRIAL_CHECKPOINT)
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            self._set(trial_id, p.TRIAL_RESUMED_FROM_STEP, step)
            log.info("trial %d runs again after its worker died, from its checkpoint at step %d",
                     self._numbers[trial_id], step)  # fmt: skip

    # -- results -------------------------------------------------------------------------------

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """An intermediate result: to Optuna (one objective, keyed by our step) and listeners."""
        if p.RESULT_STATE in result or trial_id in self._ended or trial_id not in self._numbers:
            return
        stored = self._checkpoint_of(trial_id, result)
        if stored is not None:
            self._set(trial_id, p.TRIAL_CHECKPOINT, stored.record())
        self._record_step(trial_id, result)

    def _checkpoint_of(self, trial_id: str, result: dict[str, Any]) -> StoredCheckpoint | None:
        """The checkpoint Ray Tune stored with this result, if any (`checkpoints`)."""
        if self.checkpoints is None or not isinstance(result.get(p.STEP), int):
            return None
        return self.checkpoints.reported(trial_id, result.get(CHECKPOINT_DIR), result[p.STEP])

    def _record_step(self, trial_id: str, result: dict[str, Any]) -> None:
        """A step's result, once: the first objective as Optuna's intermediate value, and the
        metrics to the listeners (the trackers)."""
        step = result.get(p.STEP)
        if not isinstance(step, int) or step <= self._last_step.get(trial_id, 0):
            return
        self._last_step[trial_id] = step
        self._report(trial_id, result)
        if self.events is not None:
            number = self._numbers[trial_id]
            self.events.trial_result(TrialResult(trial_id, number, step, reported_metrics(result)))

    def _report(self, trial_id: str, result: dict[str, Any]) -> None:
        """The first objective's value at this step, as Optuna's intermediate value."""
        if self.space.is_multi_objective:
            return
        value, step = finite_number(result.get(self.space.metric_names[0])), result.get(p.STEP)
        if value is not None and isinstance(step, int):
            storage_id = self._storage_ids[trial_id]
            compat.set_intermediate_value(self.opened.storage, storage_id, step, value)

    def _set(self, trial_id: str, key: str, value: Any) -> None:
        compat.set_user_attr(self.opened.storage, self._storage_ids[trial_id], key, value)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Store the trial as what it was: complete, pruned, infeasible or failed."""
        if trial_id in self._ended or trial_id not in self._numbers:
            return
        self._ended.add(trial_id)
        result = result or {}
        outcome = result.get(p.RESULT_STATE)
        if outcome is None and not error:
            # A scheduler or stopper ended the trial on this result, which Ray Tune then hands
            # only to us here: it is a step like the others, for the study and the trackers.
            stored = self._checkpoint_of(trial_id, result)
            if stored is not None:
                self._set(trial_id, p.TRIAL_CHECKPOINT, stored.record())
            self._record_step(trial_id, result)
        if outcome is None and not error and result.get(p.STEP, 0) >= self.max_steps:
            outcome = p.Outcome.COMPLETE  # a scheduler stopped it exactly at its last step
        if error and outcome is None:
            outcome = p.Outcome.FAILED
            where = f"{self.trial_logs}/trial_{trial_id}/error.txt"
            result = {
                **result,
                p.RESULT_ERROR: f"the trial's worker process failed; Ray's report: {where}",
            }
        values: list[float] | None = None
        if outcome == p.Outcome.COMPLETE:
            values = self._values(result)
            if values is None:
                outcome = p.Outcome.FAILED
                result = {
                    **result,
                    p.RESULT_ERROR: f"final result lacks finite {self.space.metric_names}",
                }
            else:
                self._set(trial_id, p.TRIAL_METRICS, reported_metrics(result))
        # Text from a trial is scrubbed again here, with every secret the driver knows of,
        # before the study database (and, from it, every file) keeps it.
        if outcome == p.Outcome.PRUNED:
            self._set(trial_id, p.TRIAL_REASON, _text(result.get(p.RESULT_REASON, "")))
        elif outcome == p.Outcome.FAILED:
            self._set(trial_id, p.TRIAL_ERROR, _text(result.get(p.RESULT_ERROR, "unknown error")))
        elif outcome is None:
            outcome = p.Outcome.PRUNED  # a scheduler stopped it on this result
            if any(m in result for m in self.space.metric_names):
                self._set(trial_id, p.TRIAL_METRICS, reported_metrics(result))
        if isinstance(result.get(p.STEP), int):
            self._set(trial_id, p.TRIAL_LAST_STEP, int(result[p.STEP]))
        outcome = p.Outcome(outcome) if outcome in set(p.Outcome) else p.Outcome.FAILED
        self._set(trial_id, p.TRIAL_STATE, outcome.value)
        state = {p.Outcome.COMPLETE: TrialState.COMPLETE, p.Outcome.FAILED: TrialState.FAIL}.get(
            outcome, TrialState.PRUNED
        )
        number = self._numbers[trial_id]
        frozen = self.study.tell(
            number, values if state == TrialState.COMPLETE else None, state=state
        )
        if self.events is not None:
            self.events.trial_finished(p.trial_end(trial_id, frozen))
        if self.checkpoints is not None and state != TrialState.FAIL:
            self.checkpoints.prune(self.opened, self.space, self.max_steps)

    def _values(self, result: dict[str, Any]) -> list[float] | None:
        values = [finite_number(result.get(name)) for name in self.space.metric_names]
        finite = [v for v in values if v is not None]
        return finite if len(finite) == len(values) else None

    # -- state ---------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Which Ray trial is which Optuna trial: plain data (the study itself is the record)."""
        return {
            "study_name": self.study.study_name,
            "trials": dict(self._numbers),
            "ended": sorted(self._ended),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Re-attach to the trials of a saved state, read back from the study."""
        if state.get("study_name") != self.study.study_name:
            raise ValueError(
                f"searcher state of study {state.get('study_name')!r}, not {self.study.study_name!r}"
            )
        for ray_id, number in dict(state.get("trials") or {}).items():
            self._numbers[str(ray_id)] = int(number)
            self._storage_ids[str(ray_id)] = self.opened.trial_id(int(number))
        self._ended.update(str(t) for t in state.get("ended") or [])

    def save(self, checkpoint_path: str) -> None:
        """JSON, never a pickle: a checkpoint must not be able to run code when read back."""
        import json

        with open(checkpoint_path, "w", encoding="utf-8") as file:
            json.dump(self.get_state(), file)

    def restore(self, checkpoint_path: str) -> None:
        import json

        with open(checkpoint_path, encoding="utf-8") as file:
            self.set_state(json.load(file))


def _text(value: Any) -> str:
    """Scrubbed before it is cut, so a cut never leaves the first part of a secret behind."""
    return scrub_then_cut(redact_text, str(value), MAX_TEXT)


CHECKPOINT_DIR = "checkpoint_dir_name"  # Ray Tune's result key: the checkpoint it stored
_RAY_KEYS = frozenset({CHECKPOINT_DIR, "training_iteration", "timestamp", "time_this_iter_s",
                       "time_total_s", "time_since_restore", "iterations_since_restore", "pid", "done"})  # fmt: skip


def reported_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics a trial reported (not Ray's bookkeeping, not our protocol keys)."""
    return {
        k: float(v)
        for k, v in result.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k not in _RAY_KEYS
        and k not in p.RESULT_KEYS
        and not k.startswith(("ugro_", "config/"))
    }
