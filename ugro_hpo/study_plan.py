"""The plan of one study: what a validated config says, as plain, picklable data that every
layer reads (`config.plan.build_plan` makes it); and the live objects its checks built, which
travel beside it rather than inside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ugro_hpo.space import SearchSpace


@dataclass(frozen=True)
class Plan:
    """Everything one study needs, validated and resolved."""

    study_name: str
    sampler_name: str  # the Optuna sampler class in use (search=auto decides from the space)
    n_trials: int
    parallel_jobs: int
    seed: int
    max_steps: int
    eval_every: int
    storage: str
    resume: bool
    dry_run: bool
    verbose: int
    outputs_dir: Path
    run_dir: Path
    search_space: SearchSpace
    objective: dict[str, Any]
    sampler: dict[str, Any]
    scheduler: dict[str, Any]
    tracker_specs: dict[str, dict[str, Any]]
    tracking_required: bool
    resources: dict[str, float]
    ray_address: str | None
    ray_num_cpus: int | None
    ray_autoscaler: bool
    export_best: Path | None
    tags: dict[str, str]
    max_failures: int
    max_consecutive_failures: int
    trial_timeout_s: float | None
    time_budget_s: float | None
    progress_interval_s: float
    report: bool
    warm_start: tuple[tuple[str, str], ...]  # earlier studies (name, storage URL) to start from
    warm_start_trials: int
    budget_steps: int | None  # budget.steps: training steps over the study (None: no limit)
    config: dict[str, Any] = field(repr=False)
    sampler_reason: str = ""  # why search=auto chose its sampler (empty for other searches)
    scheduler_reason: str = ""  # what scheduler=auto chose (empty for other schedulers)
    gpu_auto: bool = False  # resources.gpu: auto, decided by `execution.resources.settle`
    resources_reason: str = ""  # what auto decided from (empty when given as numbers)
    workers: int = 1  # resources.workers: processes per trial (a Ray Train group above 1)
    strategy: str = "ddp"  # resources.strategy: how a group trains (ddp or fsdp)
    uses_gpu: bool = False  # what the checked objective said of itself, kept as data
    gpu_only: str | None = None  # why it cannot run without a GPU (a quantised model), or None
    gpu_memory_gib: float | None = None  # its weights' size, when known
    # ray.runtime_env as checked, with the objective's code folder when it is shipped
    ray_runtime_env: dict[str, Any] | None = field(default=None, repr=False)
    ray_storage_path: str | None = None  # ray.storage_path: a folder or a bucket URI

    @property
    def ray_dir(self) -> Path:
        """Ray Tune's experiment directory for this study (on a local or shared folder)."""
        if self.ray_storage_path and "://" not in self.ray_storage_path:
            return Path(self.ray_storage_path) / self.study_name
        return self.outputs_dir / "ray" / self.study_name

    @property
    def ray_storage(self) -> str:
        """Ray Tune's storage path for this study: results and trial checkpoints."""
        if self.ray_storage_path and "://" in self.ray_storage_path:
            return f"{self.ray_storage_path.rstrip('/')}/{self.study_name}"
        return str(self.ray_dir)


@dataclass
class LiveParts:
    """The live objects built while checking a config, kept beside the plan (which stays plain,
    picklable data): the objective checked on the driver, the one to send to the trials (an
    object given through the Python API or the sweeper, else its spec), and our trackers."""

    objective: Any
    sent_objective: Any
    trackers: list[Any] = field(default_factory=list)
