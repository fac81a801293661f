"""Structured-config schema for the app's own top-level keys.

Values live in conf/config.yaml; this schema fixes their types, so `n_trials=abc` or a typo in a
key fails at composition with a clear message. Config groups (model, dataset, search_space,
objective, search, scheduler, tracking) are free-form: their `_target_`s are checked when they
are instantiated, not mirrored here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class RaySchema:
    address: str | None = MISSING
    num_cpus: int | None = MISSING
    autoscaler: bool = MISSING


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
