"""The settings model: every top-level key of the app, its type, its default and what it is for.

This is the one place a key is defined. ``conf/config.yaml`` only chooses the config groups'
options (model, dataset, search space, objective, search, scheduler, tracking) and Hydra's own
settings; the sweeper's config (``hydra.sweeper``) reuses the sections it shares with the app
(``ray``, ``resources``) and takes the defaults of the keys it shares from here; the plan reads
the composed values without fallbacks of its own. Hydra registers the model as a structured
config, so ``n_trials=abc`` or a typo in a key fails at composition with a clear message, and
``--help`` lists every key with its doc (`settings_help`). Config groups are free-form: their
``_target_``s are checked when they are instantiated, not mirrored here.

Only dataclasses and OmegaConf are imported: Hydra's plugin discovery imports the sweeper's
config, and with it this module, whenever any Hydra app starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import II

AUTO = "auto"
"""``resources.gpu: auto``: one GPU per trial where there are GPUs and the objective uses them."""


def setting(default: Any, doc: str) -> Any:
    """A key: its default (a mutable one is copied per config) and the line ``--help`` shows."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def section(cls: type, doc: str) -> Any:
    """A section of keys of its own (``ray``, ``resources``)."""
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass
class RaySettings:
    address: str | None = setting(
        None, 'null: start Ray here; "auto" or host:port: join an existing cluster'
    )
    num_cpus: int | None = setting(
        None, "CPUs for a Ray started here (null: all of this machine's)"
    )
    autoscaler: bool = setting(
        False,
        "true: the cluster adds nodes on demand, so a trial that no node can run yet is waited "
        "for instead of refused at start",
    )
    storage_path: str | None = setting(
        None,
        "where Ray Tune keeps trial results and checkpoints (null: <outputs_dir>/ray); a "
        "folder every node sees, or a bucket URI (s3://..., gs://...) on a cluster",
    )
    runtime_env: Any = setting(  # its shape is checked in config/runtime_env.py
        {},
        "Ray's runtime_env for the trials: working_dir, py_modules, pip, env_vars "
        "(+ray.runtime_env.env_vars.NAME=value; checked in config/runtime_env.py); joining a "
        "cluster without a working_dir ships the custom objective's (or Hydra app's) folder",
    )


@dataclass
class ResourcesSettings:
    cpu: float = setting(1.0, "CPUs per trial (fractions share a core)")
    gpu: Any = setting(
        AUTO,
        "GPUs per trial: auto (1 when the machine or Ray cluster has GPUs and the objective "
        "trains on them, else 0) or a number (0.5 puts two trials on one GPU)",
    )
    workers: int = setting(
        1,
        "processes per trial: above 1, each trial is a data-parallel group of that many "
        "workers (Ray Train), each given resources.cpu and resources.gpu",
    )
    strategy: str = setting(
        "ddp", "how a group of workers trains: ddp (a full copy each) or fsdp (sharded; GPUs only)"
    )


@dataclass
class MlflowSettings:
    tracking_uri: str = setting(
        "sqlite:///${outputs_dir}/mlflow.db", "an MLflow store, or http://host:port of a server"
    )
    experiment_name: str = setting("ugro-hpo", "the MLflow experiment of the study's runs")


@dataclass
class WandbSettings:
    project: str | None = setting(None, "the W&B project (null: WANDB_PROJECT)")
    entity: str | None = setting(None, "the W&B entity (null: WANDB_ENTITY)")
    mode: str | None = setting(
        None, "online | offline | disabled (null: WANDB_MODE, else offline without an API key)"
    )
    api_key_file: str | None = setting(
        None, "a file holding the API key (WANDB_API_KEY_FILE); keys never go in configs"
    )


@dataclass
class BudgetSettings:
    steps: int | None = setting(
        None,
        "training steps over the whole study (every trial's reported steps, earlier runs' too); "
        "once spent no trial starts and running ones stop (null: no limit)",
    )


@dataclass
class AppSettings:
    study_name: str = setting("ugro-demo", "the study's name in the storage and in outputs/")
    n_trials: int = setting(
        10, "trials that must run (complete or pruned; infeasible proposals do not count)"
    )
    parallel_jobs: int = setting(2, "trials running at once (Ray Tune's max_concurrent_trials)")
    seed: int = setting(42, "the sampler's seed and every trial's training seed")
    max_steps: int = setting(
        60, "most steps a trial runs (training steps for lora, iterations for synthetic)"
    )
    eval_every: int = setting(
        II("ugro_eval_every:${max_steps}"),
        "steps between evaluations, reported to the scheduler (unset: max_steps // 6, at least 1)",
    )
    outputs_dir: str = setting("outputs", "where runs, the study database and tracking stores live")
    storage: str = setting(
        "sqlite:///${outputs_dir}/studies.db",
        "Optuna storage URL (postgresql://... for drivers on several machines)",
    )
    resume: bool = setting(
        True, "continue a study of the same name; false archives it and starts afresh"
    )
    dry_run: bool = setting(False, "validate and print the plan, run nothing")
    search_space_file: str | None = setting(
        None, "a UGRO search-space YAML file; replaces the search_space group's option"
    )
    export_best: str | None = setting(None, "also write the best parameters to this path")
    max_failures: int = setting(0, "retries of a trial whose worker process dies (Ray's)")
    max_consecutive_failures: int = setting(
        10, "stop the study after this many failed trials in a row (0: never)"
    )
    trial_timeout_s: float | None = setting(
        None, "stop a trial that runs longer (checked at each report); it counts as pruned"
    )
    time_budget_s: float | None = setting(
        None, "end the study after this long, keeping what finished; rerun to continue"
    )
    progress_interval_s: float = setting(
        25.0, "seconds between progress lines when the output is not a terminal"
    )
    report: bool = setting(True, "write report/ (plots, importances, HTML page) at the end")
    warm_start: list[str] = setting(
        [],
        "earlier studies a new study starts from: names in this storage, or name@storage-URL; "
        "their best trials whose parameters fit this space run first",
    )
    warm_start_trials: int = setting(5, "how many of the earlier studies' best trials run first")
    unpickle_shared_storage: bool = setting(
        False,
        "search=cmaes keeps its state as pickles in the storage, and unpickling runs code; "
        "refused on a shared database (postgresql://...) unless set, for one only you write to",
    )
    verbose: int = setting(0, "0: our progress only; 1: our debug logs; 2+: Ray Tune's tables too")
    budget: BudgetSettings = section(BudgetSettings, "what the study may spend, besides n_trials")
    ray: RaySettings = section(RaySettings, "the Ray instance the trials run on")
    resources: ResourcesSettings = section(ResourcesSettings, "what each trial gets")
    mlflow: MlflowSettings = section(MlflowSettings, "tracking=mlflow|dual")
    wandb: WandbSettings = section(WandbSettings, "tracking=wandb|dual")
    tags: dict[str, str] = setting(
        {}, "your own labels for the study's runs: +tags.team=nlp +tags.ticket=HPO-12"
    )
    # The config groups, chosen in conf/config.yaml's defaults list.
    model: Any = None
    dataset: Any = None
    search_space: Any = None
    objective: Any = None
    search: Any = None
    scheduler: Any = None
    tracking: Any = None


GROUPS = ("model", "dataset", "search_space", "objective", "search", "scheduler", "tracking")


def register() -> None:
    """Make the model available to conf/config.yaml's defaults list as `ugro_schema`."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="ugro_schema", node=AppSettings)


def keys(schema: type = AppSettings, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every key of the model (dotted, sections walked) with its dataclass field."""
    for f in fields(schema):
        nested = _nested(f)
        if nested is not None:
            yield from keys(nested, f"{prefix}{f.name}.")
        elif f.name not in GROUPS:
            yield f"{prefix}{f.name}", f


def default(key: str) -> Any:
    """A key's default, as the model states it (``default("resources.gpu")`` is ``"auto"``)."""
    for name, f in keys():
        if name == key:
            return f.default_factory() if f.default is NO_DEFAULT else f.default
    raise KeyError(key)


def settings_help() -> str:
    """Every key with its default and doc, for ``--help``."""
    lines = []
    for name, f in keys():
        value = default(name)
        shown = (
            "null" if value is None else str(value).lower() if isinstance(value, bool) else value
        )
        lines.append(f"{name} = {shown}\n    {f.metadata['doc']}")
    return "\n".join(lines)


def unknown_keys(
    data: Mapping[str, Any], schema: type = AppSettings, prefix: str = ""
) -> list[str]:
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
    schema: type | None = AppSettings
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
