"""Structured-config schema for the app's own top-level keys.

Values live in conf/config.yaml; this schema fixes their types, so `n_trials=abc` or a typo in a
key fails at composition with a clear message. Config groups (model, dataset, search_space,
objective, search, scheduler, tracking) are free-form: their `_target_`s are checked when they
are instantiated, not mirrored here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING


@dataclass
class RaySchema:
    address: str | None = MISSING
    num_cpus: int | None = MISSING
    autoscaler: bool = MISSING
    runtime_env: Any = MISSING  # Ray's runtime_env (checked in config/runtime_env.py)


@dataclass
class ResourcesSchema:
    cpu: float = MISSING
    gpu: Any = MISSING  # a number, or "auto" (checked when the plan is built)


@dataclass
class MlflowSchema:
    tracking_uri: str = MISSING
    experiment_name: str = MISSING


@dataclass
class WandbSchema:
    project: str | None = MISSING
    entity: str | None = MISSING
    mode: str | None = MISSING
    api_key_file: str | None = MISSING


@dataclass
class AppSchema:
    study_name: str = MISSING
    n_trials: int = MISSING
    parallel_jobs: int = MISSING
    seed: int = MISSING
    max_steps: int = MISSING
    eval_every: int = MISSING
    outputs_dir: str = MISSING
    storage: str = MISSING
    resume: bool = MISSING
    dry_run: bool = MISSING
    search_space_file: str | None = MISSING
    export_best: str | None = MISSING
    max_failures: int = MISSING
    max_consecutive_failures: int = MISSING
    trial_timeout_s: float | None = MISSING
    time_budget_s: float | None = MISSING
    progress_interval_s: float = MISSING
    report: bool = MISSING
    unpickle_shared_storage: bool = MISSING
    verbose: int = MISSING
    ray: RaySchema = field(default_factory=RaySchema)
    resources: ResourcesSchema = field(default_factory=ResourcesSchema)
    mlflow: MlflowSchema = field(default_factory=MlflowSchema)
    wandb: WandbSchema = field(default_factory=WandbSchema)
    tags: dict[str, str] = field(default_factory=dict)
    model: Any = None
    dataset: Any = None
    search_space: Any = None
    objective: Any = None
    search: Any = None
    scheduler: Any = None
    tracking: Any = None


def register() -> None:
    """Make the schema available to conf/config.yaml's defaults list as `ugro_schema`."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="ugro_schema", node=AppSchema)


def unknown_keys(data: Mapping[str, Any], schema: type = AppSchema, prefix: str = "") -> list[str]:
    """Dotted keys of ``data`` that the schema does not have. ``+key=value`` adds a key past the
    schema (Hydra opens the config for it), so a typo written that way is caught here; keys
    under a free-form field (``tags``, the config groups) are the user's own."""
    known = {f.name: _nested(f) for f in fields(schema)}
    found = []
    for key, value in data.items():
        if key not in known:
            found.append(f"{prefix}{key}")
        elif known[key] is not None and isinstance(value, Mapping):
            found += unknown_keys(value, known[key], f"{prefix}{key}.")  # type: ignore[arg-type]
    return found


def unknown_key_message(key: str) -> str:
    """One line for a key the config does not have, with the nearest known key."""
    *section, last = key.split(".")
    schema: type | None = AppSchema
    for part in section:
        schema = {f.name: _nested(f) for f in fields(schema)}.get(part) if schema else None
    near = difflib.get_close_matches(last, [f.name for f in fields(schema)] if schema else [], n=1)
    hint = f" (did you mean {'.'.join([*section, near[0]])}?)" if near else ""
    return (
        f"{key}: not a key of the config{hint}; `python -m ugro_hpo --cfg job` lists them "
        "(+key=value adds keys only under tags and the config groups)"
    )


def _nested(f: Any) -> type | None:
    """The schema of a field that is a section of its own (``ray``, ``resources``), else None."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and is_dataclass(factory) else None
