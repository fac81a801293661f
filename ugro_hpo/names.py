"""Rules for names that become paths, run names, groups, tags or study names.

Every rule is an ASCII whitelist (so Unicode look-alikes, control and shell characters are out)
with the length the backends accept. A study name ends up in a directory path, an Optuna study,
a Ray experiment and tracking runs, so it follows the strictest: letters, digits, '-', '_' and
'.', not starting with '.', no '..', at most 128 characters.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from ugro_hpo.errors import ConfigError

_PATH_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_path_name(value: object, key: str) -> str:
    """Return ``value`` if it is a safe path component, else raise a one-line ConfigError."""
    if not isinstance(value, str) or not _PATH_SAFE.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"invalid name {value!r}; use 1-128 ASCII letters, digits, '-', '_' or '.', "
            "not starting with '.'",
            key=key,
        )
    return value


_WANDB_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_MLFLOW_EXPERIMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\- /]{0,249}")


def check_wandb_project(value: object) -> str:
    """W&B project names: letters, digits, '-' and '_', 1-128 characters."""
    if not isinstance(value, str) or not _WANDB_NAME.fullmatch(value):
        raise ConfigError(
            f"Invalid project name: {value}; use 1-128 letters, digits, '-' or '_' (wandb.project / WANDB_PROJECT)"
        )
    return value


def check_wandb_entity(value: object) -> str:
    """W&B entities (team or user names) follow the project rule."""
    if not isinstance(value, str) or not _WANDB_NAME.fullmatch(value):
        raise ConfigError(
            f"Invalid entity name: {value}; use 1-128 letters, digits, '-' or '_' (wandb.entity)"
        )
    return value


def check_mlflow_experiment(value: object) -> str:
    """MLflow experiment names: printable, no path traversal, at most 250 characters."""
    if not isinstance(value, str) or not _MLFLOW_EXPERIMENT.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"mlflow.experiment_name: invalid name {value!r}; use up to 250 letters, digits, "
            "spaces, '-', '_', '.', '/'"
        )
    return value


_TAG_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
_TAG_VALUE = re.compile(r"[A-Za-z0-9_.:/@+=\- ]{0,200}")


def check_tags(tags: object) -> dict[str, str]:
    """User tags (``tags.team=nlp``): safe keys, plain values, within W&B's and MLflow's limits."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise ConfigError("tags: must map names to values, e.g. +tags.team=nlp")
    checked = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key) or ".." in key:
            raise ConfigError(
                f"tags: invalid tag name {key!r}; use 1-64 letters, digits, '-', '_' or '.'"
            )
        text = "" if value is None else str(value)
        if not _TAG_VALUE.fullmatch(text):
            raise ConfigError(
                f"tags.{key}: invalid value; use up to 200 letters, digits, spaces and - _ . : / @ + ="
            )
        checked[key] = text
    return checked


def job_study_name(
    study_name: str, job_overrides: Sequence[str], varying: Collection[str], num: int
) -> str:
    """A multirun job's study name: the sweep's study name and the overrides that vary between
    its jobs (``ugro-demo-search-tpe``), so jobs never share a study and each name says what
    that job ran. Falls back to the job's number when nothing varies or the name would break
    the path rules."""
    parts = []
    for line in job_overrides:
        key, _, value = line.partition("=")
        key = key.lstrip("+~")
        if key in varying:
            parts.append(f"{key}-{value}")
    fallback = f"{study_name}-{num}"
    if not parts:
        return fallback
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join([study_name, *parts])).replace("..", "_")
    return name if _PATH_SAFE.fullmatch(name) else fallback
