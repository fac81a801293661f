"""Warm starts: a new study runs the best trials of earlier ones first.

``warm_start=[name, name@postgresql://...]`` names earlier studies (in this study's storage,
or in another). When the new study is created, the best complete trials of each (their first
objective, in its direction; the Pareto front for several) whose parameters fit the new search
space are queued, best first, taking turns between the studies, up to ``warm_start_trials``.
They run as ordinary trials, so their results are this study's own, and the sampler models
them as soon as they finish. The study records what was taken from where; the summary says it.

An earlier study is data from a database others may write: its parameters go through the same
check as a stored best trial (`space.stored_params`), a value that is not a finite number is
passed over, and nothing else of it is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from ugro_hpo.errors import ConfigError
from ugro_hpo.optimize import protocol as p
from ugro_hpo.security.redaction import redact_url
from ugro_hpo.space import SearchSpace
from ugro_hpo.space.stored_params import StoredParamsRefused, check_stored_params

MAX_SOURCE_TRIALS = 100_000  # a bound on what an earlier study is read for


@dataclass(frozen=True)
class Source:
    """An earlier study: its name and storage URL."""

    study_name: str
    storage: str


@dataclass(frozen=True)
class Taken:
    """A trial of an earlier study, queued to run first."""

    source: Source
    number: int
    params: dict[str, Any]


def best_fitting(source: Source, storage: optuna.storages.BaseStorage, space: SearchSpace,
                 limit: int) -> tuple[list[Taken], int]:  # fmt: skip
    """The source's best complete trials that fit ``space`` (at most ``limit``), and how many
    complete trials it has. ``storage`` is the source's, opened by the caller."""
    if source.study_name not in optuna.get_all_study_names(storage):
        raise ConfigError(
            f"study {source.study_name!r} in {redact_url(source.storage)} does not exist; name "
            "a study that ran (or drop it from warm_start)",
            key="warm_start",
        )
    study = optuna.load_study(study_name=source.study_name, storage=storage)
    complete = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and all(isinstance(v, float) and math.isfinite(v) for v in t.values)
    ][:MAX_SOURCE_TRIALS]  # fmt: skip
    if len(study.directions) == 1:
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
        complete.sort(key=lambda t: sign * t.values[0])
    else:
        front = {t.number for t in study.best_trials}
        complete.sort(key=lambda t: (t.number not in front, t.number))
    taken: list[Taken] = []
    for trial in complete:
        if len(taken) == limit:
            break
        try:
            params = check_stored_params(trial.params, space, trial.number)
        except StoredParamsRefused:
            continue  # another space: this trial's parameters do not fit the new one
        taken.append(Taken(source, trial.number, params))
    return taken, len(complete)


def choose(sources: Sequence[tuple[Source, optuna.storages.BaseStorage]], space: SearchSpace,
           limit: int) -> tuple[list[Taken], list[dict[str, Any]]]:  # fmt: skip
    """The trials to queue (best first, taking turns between the sources, no repeats) and what
    the study records of each source (each given with its opened storage)."""
    per_source = [best_fitting(source, storage, space, limit) for source, storage in sources]
    chosen: list[Taken] = []
    seen: set[str] = set()
    for rank in range(limit):
        for taken, _ in per_source:
            if rank < len(taken) and len(chosen) < limit:
                key = repr(sorted(taken[rank].params.items()))
                if key not in seen:
                    seen.add(key)
                    chosen.append(taken[rank])
    record = [
        {
            "study": source.study_name,
            "storage": redact_url(source.storage),
            "complete_trials": complete,
            "queued_trials": [t.number for t in chosen if t.source == source],
        }
        for (source, _), (_, complete) in zip(sources, per_source, strict=True)
    ]
    return chosen, record


def enqueue(study: optuna.Study, chosen: list[Taken]) -> None:
    """Queue the chosen trials, each naming where it came from."""
    for taken in chosen:
        study.enqueue_trial(
            taken.params,
            user_attrs={p.TRIAL_ORIGIN: "warm_start",
                        p.TRIAL_WARM_FROM: f"{taken.source.study_name}#{taken.number}"},
        )  # fmt: skip
