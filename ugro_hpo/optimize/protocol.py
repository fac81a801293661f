"""What a trial, the driver and the study storage say to each other, in one place.

A trial reports metrics at steps (`STEP`) and, once, how it ended (`RESULT_STATE` with the
error, reason or violation beside it); the driver's searcher stores that outcome in Optuna
with the trial attributes below; everything that reads a study back (the summary, `analyze`,
trackers, progress) reads these names. How each outcome is stored in Optuna:

| outcome | Optuna state | values | why |
|---|---|---|---|
| complete | COMPLETE | the objectives' final values | |
| pruned | PRUNED | Optuna's: the last intermediate value (every reported step kept) | a scheduler stopped it, or its time ran out |
| infeasible | PRUNED, with `set_constraint` > 0 and our state attribute | none, and no intermediate values | it never ran: no tool may take it for a result (best trial, importances, dashboards read COMPLETE trials); TPE reads constraints of pruned trials and learns the region, the GP through `optuna_compat` |
| failed | FAIL | none | an exception, a NaN, a dead worker; its parameters may run again |
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ugro_hpo.trial_events import TrialEnd


class Outcome(StrEnum):
    """How a trial ended (or where it is): the words of trials.csv, summaries and trackers."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    INFEASIBLE = "infeasible"
    FAILED = "failed"
    RUNNING = "running"
    WAITING = "waiting"


RAN = (Outcome.COMPLETE, Outcome.PRUNED)
"""Trials that ran and count towards ``n_trials`` (an infeasible proposal never ran)."""

# -- what a trial reports (keys of its results, besides its metrics) ----------------------------
STEP = "step"
RESULT_STATE = "ugro_state"
RESULT_ERROR = "ugro_error"
RESULT_REASON = "ugro_reason"
GROUP_PLACEMENT = "ugro_group"
"""A group's trial (``resources.workers`` above 1): its workers' placement group, by id."""
RESULT_KEYS = frozenset({STEP, RESULT_STATE, RESULT_ERROR, RESULT_REASON, GROUP_PLACEMENT})
CONFIG_EXTRAS = "__ugro__"
"""Key of the extras the searcher adds to a trial's config (its number); never a parameter."""

# -- trial attributes in the study (written by the driver) -------------------------------------
TRIAL_STATE = "state"
TRIAL_ERROR = "error"
TRIAL_REASON = "reason"
TRIAL_VIOLATION = "violation"
TRIAL_METRICS = "metrics"
TRIAL_LAST_STEP = "last_step"
TRIAL_DRIVER = "driver"
TRIAL_RAY_ID = "ray_trial_id"
TRIAL_RETRY_OF = "retry_of"
TRIAL_ORIGIN = "origin"
TRIAL_WARM_FROM = "warm_start_from"  # the earlier study and trial a warm-start trial repeats
TRIAL_CHECKPOINT = "checkpoint"
"""The trial's last checkpoint: ``{"path": <relative to Ray's storage path>, "step": n}``."""
TRIAL_RESUMED_FROM = "resumed_from"  # the checkpoint (same form) a retry continued from
TRIAL_RESUMED_FROM_STEP = "resumed_from_step"

# -- study attributes -------------------------------------------------------------------------
STUDY_SPACE = "ugro:search_space"
STUDY_CONFIG = "ugro:config"
STUDY_METADATA = "ugro:metadata"
STUDY_N_TRIALS = "ugro:n_trials"
STUDY_FACTS = "ugro:facts"
STUDY_WARM_START = "ugro:warm_start"  # what was queued from which earlier study
STUDY_OBJECTIVES = "objectives"
STUDY_MLFLOW_PARENT = "mlflow_parent_run:"
"""Prefix of the MLflow parent run id attribute (one per tracking URI)."""

# -- messages stored as a trial's error --------------------------------------------------------
INTERRUPTED = "interrupted: the study stopped while it ran"
NO_HEARTBEAT = "interrupted: its driver stopped (no heartbeat)"
STOOD_DOWN = "not run: the study's n_trials were already running or finished"
STOPPED_EARLY = "stopped early: "
"""How the error of a trial the study's early stop cut short begins (the reason follows)."""


def cut_short(error: str | None) -> bool:
    """Did the study's own end stop this trial while it ran (`StudySearcher.abandon`)?"""
    return error == INTERRUPTED or (error or "").startswith(STOPPED_EARLY)


def outcome_of(trial: Any) -> Outcome:
    """How a stored Optuna trial ended, as the searcher stored it (see the table above).

    Studies made by earlier versions stored infeasible trials as complete with stand-in
    values, or as pruned with a violation; they read back as infeasible too.
    """
    state = trial.state.name
    recorded = trial.user_attrs.get(TRIAL_STATE)
    if state == "COMPLETE":
        return Outcome.INFEASIBLE if recorded == Outcome.INFEASIBLE else Outcome.COMPLETE
    if state == "PRUNED":
        infeasible = recorded == Outcome.INFEASIBLE or trial.user_attrs.get(TRIAL_VIOLATION)
        return Outcome.INFEASIBLE if infeasible else Outcome.PRUNED
    if state == "FAIL":
        return Outcome.FAILED
    return Outcome.RUNNING if state == "RUNNING" else Outcome.WAITING


def trial_end(trial_id: str, trial: Any) -> TrialEnd:
    """The ending event of a stored Optuna trial: what the study keeps of it, as listeners
    read it (see `ugro_hpo.trial_events`)."""
    attrs = trial.user_attrs
    outcome = outcome_of(trial)
    values = trial.values if outcome == Outcome.COMPLETE and trial.values else ()
    return TrialEnd(
        trial_id=trial_id,
        number=trial.number,
        state=str(outcome),
        metrics=dict(attrs.get(TRIAL_METRICS) or {}),
        violation=attrs.get(TRIAL_VIOLATION) or None,
        error=attrs.get(TRIAL_ERROR),
        last_step=attrs.get(TRIAL_LAST_STEP),
        values=tuple(float(v) for v in values),
        params=dict(trial.params),
    )
