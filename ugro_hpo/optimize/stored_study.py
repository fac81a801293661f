"""A study in storage, read back with what it was run with: the run records its config,
search space, budget and facts as study attributes (`remember_run`), and the stored-study
commands load them (`load`). A shared database is written by others, so every value read here
is checked: names by the command line's rules, sizes bounded, the config's objective against
the allow-list, and nothing in it is imported or called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.rung_steps import as_text, milestones
from ugro_hpo.security.limits import check_data, load_json
from ugro_hpo.security.redaction import redact_url
from ugro_hpo.security.stored_objective import check_objective
from ugro_hpo.space import SearchSpace, parse_search_space
from ugro_hpo.validation import stored_whole_number


@dataclass
class StoredStudy:
    """A study loaded back with what it was run with, every stored value checked."""

    study: Any
    space: SearchSpace
    config: dict[str, Any]
    objective: dict[str, Any]  # the stored objective section, checked against the allow-list
    facts: dict[str, str]  # what the run recorded about itself (sampler, scheduler)
    storage: str
    n_trials: int


def remember_run(study: Any, plan: Any) -> None:
    """Keep with the study what a later analysis or final training needs (secrets scrubbed)."""
    from ugro_hpo.optimize.storage import set_study_attr

    set_study_attr(study, p.STUDY_CONFIG, json.loads(json.dumps(plan.config, default=str)))
    metadata = json.loads(json.dumps(dict(plan.search_space.metadata), default=str))
    set_study_attr(study, p.STUDY_METADATA, metadata)
    set_study_attr(study, p.STUDY_N_TRIALS, plan.n_trials)
    set_study_attr(study, p.STUDY_FACTS, run_facts(plan))


FACT_KEYS = ("sampler", "sampler_reason", "sampler_startup_trials", "scheduler", "scheduler_reason",
             "rungs", "max_steps")  # fmt: skip


def run_facts(plan: Any) -> dict[str, str]:
    """How the study runs, as its summary reports it: the same from the run and later."""
    return {
        "sampler": plan.sampler_name,
        "sampler_reason": plan.sampler_reason,
        "sampler_startup_trials": _startup_trials(plan.sampler),
        "scheduler": str(plan.scheduler["_target_"]),
        "scheduler_reason": plan.scheduler_reason,
        "rungs": as_text(milestones(plan.scheduler, plan.max_steps)),
        "max_steps": str(plan.max_steps),
    }


def _startup_trials(sampler: dict[str, Any]) -> str:
    """How many trials a modelling sampler proposes at random before it models ('' for one
    that never models: random, QMC, grid)."""
    for key in ("n_startup_trials", "population_size"):
        value = sampler.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return ""


def load_stored_study(study_name: str, storage: str) -> StoredStudy:
    """The study and its search space, or a one-line error that names the study and storage.

    Everything read here comes from a database other drivers can write: names are checked by
    the rules for names given on the command line, sizes are bounded, the stored config's
    objective is checked against the allow-list, and nothing in it is imported or called.
    """
    import optuna

    from ugro_hpo.names import check_path_name
    from ugro_hpo.optimize.storage import open_storage, untrusted_read

    check_path_name(study_name, "--study-name")
    if "://" not in storage:
        raise ConfigError(
            f"{storage!r} is not a database URL (e.g. sqlite:///outputs/studies.db)",
            key="--storage",
        )
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"--storage: {storage} does not exist; run from the study's directory or pass --storage"
        )
    opened = open_storage(storage)
    where = f"study {study_name!r}"
    with untrusted_read(where):
        names = sorted(optuna.get_all_study_names(opened))
        if study_name not in names:
            shown = [n for n in names if _is_safe_name(n)]
            known = ", ".join(shown[:10]) or "none"
            hidden = len(names) - len(shown)
            if hidden:
                known += f" and {hidden} with names that are not valid study names"
            raise ConfigError(
                f"--study-name: no study {study_name!r} in {redact_url(storage)} (studies: {known})"
            )
        study = optuna.load_study(study_name=study_name, storage=opened)
        attrs = dict(study.user_attrs)
    fingerprint = attrs.get(p.STUDY_SPACE)
    if not fingerprint:
        raise ConfigError(
            f"--study-name: study {study_name!r} was not made by ugro_hpo (no search space stored)"
        )
    space_data = load_json(fingerprint, f"{where}: stored search space")
    space = parse_search_space(space_data, f"study {study_name}")
    metadata = _stored_mapping(attrs.get(p.STUDY_METADATA), f"{where}: stored metadata")
    if metadata:
        space = replace(space, metadata=metadata)
    config = _stored_mapping(attrs.get(p.STUDY_CONFIG), f"{where}: stored config")
    objective = check_objective(config) if config else {}
    facts = _stored_mapping(attrs.get(p.STUDY_FACTS), f"{where}: stored facts")
    return StoredStudy(
        study=study,
        space=space,
        config=config,
        objective=objective,
        facts={k: _plain_text(facts.get(k)) for k in FACT_KEYS if facts.get(k)},
        storage=storage,
        n_trials=_stored_count(attrs.get(p.STUDY_N_TRIALS), len(study.trials), where),
    )


def _is_safe_name(name: str) -> bool:
    from ugro_hpo.names import check_path_name

    try:
        check_path_name(name, "study")
    except ConfigError:
        return False
    return True


def _stored_mapping(value: Any, label: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{label}: is not a mapping; the study database may have been altered")
    check_data(value, label)
    return value


def _stored_count(value: Any, default: int, where: str) -> int:
    if value is None:
        return default
    return stored_whole_number(value, where, "n_trials", 1)


def _plain_text(value: Any) -> str:
    """A stored name shown to a person: printable ASCII, short."""
    text = "".join(c for c in str(value) if 32 <= ord(c) < 127)
    return text[:200]


def status_of(stored: StoredStudy) -> str:
    """complete, running (trials in flight), or incomplete (interrupted, stopped, time budget)."""
    trials = stored.study.get_trials(deepcopy=False)
    outcomes = [p.outcome_of(t) for t in trials]
    if sum(o in p.RAN for o in outcomes) >= stored.n_trials:
        return "complete"
    if p.Outcome.RUNNING in outcomes:
        return "running"
    return "incomplete"
