"""The Optuna study in persistent storage: create, resume, or refuse a silent mix.

The storage is the study's single source of truth: Ray Tune's own experiment state is not
needed to continue. Rerunning the same command continues the study up to ``n_trials``; trials
left RUNNING by a driver that died are marked failed and their parameters queued once more.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ugro_hpo.errors import ConfigError
from ugro_hpo.plan import Plan
from ugro_hpo.redact import redact_url

log = logging.getLogger(__name__)

SPACE_ATTR = "ugro:search_space"
RETRY_ATTR = "retry_of"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class OpenedStudy:
    """A study ready to receive trials."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    resumed: bool
    remaining: int
    existing_trials: int


def quiet_optuna() -> None:
    """Optuna logs each study creation at INFO; our own log says what matters."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage object (Ray's OptunaSearch needs an object, not a URL)."""
    quiet_optuna()
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # a driver missing, a server unreachable, bad credentials
        raise ConfigError(
            f"storage: cannot open {redact_url(url)} ({type(exc).__name__}: {exc})"
        ) from None


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards n_trials: complete, pruned and infeasible ones."""
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def open_study(plan: Plan) -> OpenedStudy:
    """Load or create the plan's study and work out how many trials are still to run."""
    storage = open_storage(plan.storage)
    space = plan.search_space
    names = {
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }
    if plan.study_name in names and not plan.resume:
        _archive(storage, plan.study_name)
        names.discard(plan.study_name)

    resumed = plan.study_name in names
    if resumed:
        study = optuna.load_study(study_name=plan.study_name, storage=storage)
        _check_same_space(study, plan)
        _requeue_interrupted(study)
    else:
        directions: list[Any] = [o.direction for o in space.objectives]
        study = optuna.create_study(
            study_name=plan.study_name, storage=storage, directions=directions
        )
        study.set_user_attr(SPACE_ATTR, space.fingerprint())
        study.set_user_attr("objectives", [o.name for o in space.objectives])
        defaults = space.defaults()
        if defaults:
            study.enqueue_trial(defaults, user_attrs={"origin": "defaults"})
    existing = len(study.get_trials(deepcopy=False))
    remaining = max(0, plan.n_trials - finished_count(study))
    return OpenedStudy(study, storage, resumed, remaining, existing)


def _check_same_space(study: optuna.Study, plan: Plan) -> None:
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is not None and stored != plan.search_space.fingerprint():
        raise ConfigError(
            f"study_name: study {plan.study_name!r} was created with a different search space; "
            "use a new study_name, or resume=false to archive the old study and start afresh"
        )
    directions = [o.direction for o in plan.search_space.objectives]
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(
            f"study_name: study {plan.study_name!r} optimises other objectives; use a new study_name"
        )


def _requeue_interrupted(study: optuna.Study) -> None:
    """Trials still RUNNING belong to a driver that died: fail them, and run their point again once."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(
            trial._trial_id, "error", "interrupted: the study stopped while it ran"
        )
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if RETRY_ATTR not in trial.user_attrs and trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
            log.info(
                "trial %d was interrupted; its parameters are queued to run again", trial.number
            )


def _archive(storage: optuna.storages.BaseStorage, name: str) -> None:
    """resume=false: keep the old study under a dated name, then start the name afresh."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    archived = f"{name}-archived-{stamp}"
    optuna.copy_study(
        from_study_name=name, from_storage=storage, to_storage=storage, to_study_name=archived
    )
    optuna.delete_study(study_name=name, storage=storage)
    log.warning("resume=false: the previous study %r is kept as %r", name, archived)
