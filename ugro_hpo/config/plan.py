"""Turn a composed config into a validated plan: plain values, absolute paths, parsed space.

Everything a user can get wrong is checked here, before anything is created: types and ranges,
names, the search space and its expressions, the objective's vocabulary, the sampler. The plan
carries plain dicts (``OmegaConf.to_container(resolve=True)``) because Hydra interpolations do
not survive the trip to Ray workers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ugro_hpo.components import check_importable, instantiate
from ugro_hpo.config.runtime_env import check_runtime_env, describe_runtime_env
from ugro_hpo.config.scheduler_choice import choose_scheduler
from ugro_hpo.config.schema import AUTO, unknown_key_message, unknown_keys
from ugro_hpo.errors import ConfigError
from ugro_hpo.names import check_path_name, check_tags
from ugro_hpo.optimize.samplers import auto_reason, sampler_factory
from ugro_hpo.optimize.samplers import build_sampler as build_sampler
from ugro_hpo.security.credentials import refuse_config_credentials
from ugro_hpo.security.redaction import redact_data, redact_url
from ugro_hpo.space import SearchSpace, load_search_space, parse_search_space
from ugro_hpo.study_plan import LiveParts, Plan
from ugro_hpo.validation import whole_number

_STORAGE_URL = re.compile(r"(sqlite|postgresql|mysql)(\+[a-z0-9_]+)?://.*")
_RAY_ADDRESS = re.compile(r"auto|local|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")


def resolve(cfg: Any) -> dict[str, Any]:
    """The whole config as plain data, with a one-line error for a missing or broken value."""
    from omegaconf import DictConfig, OmegaConf, open_dict
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    cfg = cfg.copy()
    with open_dict(cfg):
        # Every ${outputs_dir} path must mean the same on Ray workers, whose cwd differs.
        cfg.outputs_dir = str(Path(str(cfg.outputs_dir)).expanduser().resolve())
    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        key = exc.full_key or "a value"
        raise ConfigError(
            f"{key}: missing value (???); set it on the command line, e.g. {key}=..."
        ) from None
    except InterpolationResolutionError as exc:
        raise ConfigError(f"{exc.full_key}: {str(exc).splitlines()[0]}") from None
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}


def build_plan(cfg: Any, run_dir: str | Path, objective: Any = None) -> Plan:
    """Validate ``cfg`` and return the plan; raise ConfigError/SearchSpaceError otherwise."""
    return plan_and_parts(cfg, run_dir, objective)[0]


def plan_and_parts(cfg: Any, run_dir: str | Path, objective: Any = None) -> tuple[Plan, LiveParts]:
    """The plan, and the live objects its checks built (see `LiveParts`).

    ``objective``, an `Objective` already built (the Hydra sweeper's job), replaces the one
    ``cfg.objective`` names; trials then receive it as it is."""
    data = resolve(cfg)
    redact_data(data)  # notes secret-named values so they are scrubbed from everything we write
    refuse_config_credentials(data)
    unknown = unknown_keys(data)
    if unknown:  # a typo given with a `+`, which Hydra lets past the schema
        raise ConfigError(unknown_key_message(unknown[0]))
    study_name = check_path_name(data.get("study_name"), "study_name")
    n_trials = _integer(data, "n_trials", minimum=1)
    parallel_jobs = _integer(data, "parallel_jobs", minimum=1)
    max_steps = _integer(data, "max_steps", minimum=1)
    eval_every = _integer(data, "eval_every", minimum=1)
    if eval_every > max_steps:
        raise ConfigError(f"{eval_every} is larger than max_steps ({max_steps})", key="eval_every")
    outputs_dir = Path(str(data["outputs_dir"])).resolve()

    space = _search_space(data)
    if objective is None:
        spec = _component(data, "objective")
        checked_objective = instantiate(spec, "objective")
    else:
        cls = type(objective)
        spec, checked_objective = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}, objective
    checked_objective.check(space)

    seed = _integer(data, "seed", minimum=0, maximum=2**32 - 1)
    storage = _storage_url(str(data["storage"]))
    sampler = _component(data, "search")
    factory = sampler_factory(sampler)
    factory.check(space)
    sampler_name = factory.name(space)
    _refuse_pickled_state(sampler_name, storage, bool(data["unpickle_shared_storage"]))
    scheduler, scheduler_reason = choose_scheduler(
        _component(data, "scheduler"), len(space.objectives), _group_choice("scheduler")
    )
    check_importable(scheduler, "scheduler")
    tracker_specs, trackers = _trackers(data)

    export_best = data.get("export_best")
    plan = Plan(
        study_name=study_name,
        n_trials=n_trials,
        parallel_jobs=parallel_jobs,
        seed=seed,
        max_steps=max_steps,
        eval_every=eval_every,
        storage=storage,
        resume=bool(data["resume"]),
        dry_run=bool(data["dry_run"]),
        verbose=_integer(data, "verbose", minimum=0),
        outputs_dir=outputs_dir,
        run_dir=Path(run_dir).resolve(),
        search_space=space,
        objective=spec,
        sampler=sampler,
        sampler_name=sampler_name,
        scheduler=scheduler,
        tracker_specs=tracker_specs,
        tracking_required=bool((data.get("tracking") or {}).get("required", True)),
        resources=_resources(data["resources"]),
        gpu_auto=data["resources"]["gpu"] == AUTO,
        workers=_workers(data["resources"], checked_objective),
        strategy=_strategy(data["resources"]["strategy"]),
        ray_address=_ray_address(data["ray"]["address"]),
        ray_num_cpus=data["ray"]["num_cpus"],
        ray_autoscaler=bool(data["ray"]["autoscaler"]),
        ray_storage_path=_storage_path(data["ray"]["storage_path"]),
        export_best=Path(export_best).resolve() if export_best else None,
        tags=check_tags(data.get("tags")),
        max_failures=_integer(data, "max_failures", minimum=0),
        max_consecutive_failures=_integer(data, "max_consecutive_failures", minimum=0),
        trial_timeout_s=_seconds(data, "trial_timeout_s"),
        time_budget_s=_seconds(data, "time_budget_s"),
        progress_interval_s=_required_seconds(data, "progress_interval_s"),
        report=bool(data["report"]),
        warm_start=_warm_start(data["warm_start"], storage, study_name),
        warm_start_trials=_integer(data, "warm_start_trials", minimum=1, maximum=10_000),
        budget_steps=None
        if data["budget"]["steps"] is None
        else whole_number(data["budget"]["steps"], "budget.steps", 1),
        config=data,
        uses_gpu=bool(getattr(checked_objective, "uses_gpu", False)),
        gpu_only=getattr(checked_objective, "gpu_only", None),
        gpu_memory_gib=getattr(checked_objective, "gpu_memory_gib", None),
        sampler_reason=auto_reason(space) if sampler["_target_"].endswith(".auto_sampler") else "",
        scheduler_reason=scheduler_reason,
        ray_runtime_env=check_runtime_env(data["ray"], checked_objective, outputs_dir),
    )
    sent = objective if objective is not None else spec
    return plan, LiveParts(objective=checked_objective, sent_objective=sent, trackers=trackers)


def _integer(data: Mapping[str, Any], key: str, minimum: int, maximum: int | None = None) -> int:
    return whole_number(data[key], key, minimum, maximum)


def _seconds(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"must be a number of seconds > 0 (or null), got {value!r}", key=key)
    return float(value)


def _required_seconds(data: Mapping[str, Any], key: str) -> float:
    value = _seconds(data, key)
    if value is None:
        raise ConfigError("must be a number of seconds > 0, got None", key=key)
    return value


def _refuse_pickled_state(sampler_name: str, storage: str, allowed: bool) -> None:
    """CMA-ES keeps its state as pickles in the storage and unpickles them at every ask:
    whoever can write to the storage could run code in this process (the rule, with its
    checks of a SQLite file's owner and mode, is `security.pickles`)."""
    from ugro_hpo.security.pickles import refuse_unpickling

    refuse_unpickling(sampler_name, storage, allowed)


def _search_space(data: Mapping[str, Any]) -> SearchSpace:
    path = data.get("search_space_file")
    if path:
        return load_search_space(Path(str(path)).expanduser())
    raw = data.get("search_space")
    if raw is None:
        raise ConfigError(
            "search_space: choose a group option (search_space=lora) or search_space_file=PATH"
        )
    return parse_search_space(raw, source=f"search_space={_group_choice('search_space')}")


def _group_choice(group: str) -> str:
    """The option chosen for a config group (when composed by Hydra's app), for messages."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group, "?"))
    return "(composed)"


def _component(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    spec = data.get(key)
    if not isinstance(spec, dict) or "_target_" not in spec:
        raise ConfigError(f"{key}: choose an option of the {key!r} group (see --help)")
    return spec


def _trackers(data: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """The tracking group's trackers (the ``tracking.callbacks`` key) by name, and ours built:
    building them is cheap and checks their names and settings, and the run uses these very
    objects. Others (Ray Tune callbacks) are only checked to be installed here, and built when
    the trials start."""
    raw = (data.get("tracking") or {}).get("callbacks") or {}
    if isinstance(raw, list):
        raw = {f"callback{i}": spec for i, spec in enumerate(raw)}
    if not isinstance(raw, dict):
        raise ConfigError("tracking.callbacks: must map names to {_target_: ...} entries")
    trackers = []
    for name, spec in raw.items():
        key = f"tracking.callbacks.{name}"
        check_importable(spec, key)
        if str(spec["_target_"]).startswith("ugro_hpo."):
            trackers.append(instantiate(spec, key))
    wandb = data.get("wandb") or {}
    if (wandb.get("project") or wandb.get("entity")) and "wandb" not in raw:
        choice = _group_choice("tracking")
        raise ConfigError(
            f"wandb.project/entity are set but tracking={choice} does not log to W&B; "
            "use tracking=wandb or tracking=dual (or drop the wandb.* settings)"
        )
    return raw, trackers


def _storage_url(url: str) -> str:
    """Check the scheme; make a relative SQLite path absolute (Ray workers have other cwds)."""
    if not _STORAGE_URL.fullmatch(url):
        raise ConfigError(
            f"{url!r} is not a database URL; use sqlite:///path.db or postgresql://user@host/db",
            key="storage",
        )
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(Path(url[len(prefix) :]).resolve())
    return url


def _resources(raw: Mapping[str, Any]) -> dict[str, float]:
    """Numbers per trial; ``gpu: auto`` stands as 0 here until the capacity is known."""
    resources: dict[str, float] = {}
    for key in ("cpu", "gpu"):
        value = raw[key]
        if key == "gpu" and value == AUTO:
            resources[key] = 0.0
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            also = " or auto" if key == "gpu" else ""
            raise ConfigError(f"must be a number >= 0{also}, got {value!r}", key=f"resources.{key}")
        if value > 1 and float(value) != int(value):
            raise ConfigError(f"above 1, use whole numbers (got {value})", key=f"resources.{key}")
        resources[key] = float(value)
    if resources["cpu"] == 0 and resources["gpu"] == 0 and raw.get("gpu") != AUTO:
        raise ConfigError("a trial needs some cpu or gpu; set resources.cpu=1", key="resources")
    return resources


STRATEGIES = ("ddp", "fsdp")


def _workers(raw: Mapping[str, Any], objective: Any) -> int:
    """``resources.workers``: a whole number >= 1; above 1 only for an objective that can run
    a trial as a group of processes."""
    workers = whole_number(raw["workers"], "resources.workers", 1)
    if workers > 1 and not getattr(objective, "runs_in_groups", False):
        name = getattr(objective, "name", type(objective).__name__)
        raise ConfigError(
            f"objective {name!r} runs each trial as one process; set resources.workers=1 "
            "(several workers per trial need objective=lora)",
            key="resources.workers",
        )
    if workers > 1 and getattr(objective, "checkpoint_every", None):
        raise ConfigError(
            "a trial of several workers does not save checkpoints yet; set "
            "objective.checkpoint_every=0 or resources.workers=1",
            key="resources.workers",
        )
    return workers


def _strategy(value: Any) -> str:
    if value not in STRATEGIES:
        raise ConfigError(f"{value!r} is not one of {list(STRATEGIES)}", key="resources.strategy")
    return str(value)


def _warm_start(value: Any, storage: str, study_name: str) -> tuple[tuple[str, str], ...]:
    """``warm_start``: study names, each in this storage or ``name@URL``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("give a list of study names, e.g. warm_start=[earlier]", key="warm_start")
    sources = []
    for entry in value:
        name, at, url = entry.partition("@")
        check_path_name(name, "warm_start")
        source = (name, _storage_url(url) if at else storage)
        if source == (study_name, storage):
            raise ConfigError(f"{name!r} is this very study; name earlier ones", key="warm_start")
        sources.append(source)
    return tuple(sources)


def _ray_address(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _RAY_ADDRESS.fullmatch(value):
        raise ConfigError(f"{value!r} is not 'auto' or host:port", key="ray.address")
    return value


def _storage_path(value: Any) -> str | None:
    """ray.storage_path: a folder (made absolute: every trial reads it) or a bucket URI."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise ConfigError("give a folder or a bucket URI such as s3://bucket/path",
                          key="ray.storage_path")  # fmt: skip
    if "://" in value:
        return value
    return str(Path(value).expanduser().absolute())


def describe(plan: Plan) -> str:
    """The plan in a few readable lines (printed by dry_run=true)."""
    space = plan.search_space
    lines = [
        f"study        {plan.study_name}  ({plan.n_trials} trials, {plan.parallel_jobs} at a time, seed {plan.seed})",
        f"storage      {redact_url(plan.storage)}",
        f"run dir      {plan.run_dir}",
        f"search space {space.source}",
    ]
    lines += [f"  {p.name:<28} {p.describe()}" for p in space.parameters]
    lines += [f"  constraint   {c.source}" for c in space.constraints]
    lines += [f"  objective    {o.name} ({o.direction})" for o in space.objectives]
    lines += [
        f"objective    {plan.objective['_target_']}  (max_steps {plan.max_steps}, eval_every {plan.eval_every})",
        f"sampler      {plan.sampler_name}"
        + (f"  ({plan.sampler_reason})" if plan.sampler_reason else ""),
        f"scheduler    {plan.scheduler['_target_']}"
        + (f"  ({plan.scheduler_reason})" if plan.scheduler_reason else ""),
        "trackers     "
        + (", ".join(f"{n} ({c['_target_']})" for n, c in plan.tracker_specs.items()) or "none"),
        f"resources    {plan.resources['cpu']:g} cpu, {plan.resources['gpu']:g} gpu per "
        + (
            f"worker, {plan.workers} workers ({plan.strategy}) per trial"
            if plan.workers > 1
            else "trial"
        )
        + (f"  ({plan.resources_reason})" if plan.resources_reason else ""),
        f"ray          {plan.ray_address or 'a local instance started for this study'}",
        *(
            [
                f"warm start   {plan.warm_start_trials} best trials of "
                + ", ".join(f"{n} ({redact_url(u)})" for n, u in plan.warm_start)
            ]
            if plan.warm_start
            else []
        ),
        f"limits       max_failures {plan.max_failures}, max_consecutive_failures "
        f"{plan.max_consecutive_failures}, trial_timeout_s {plan.trial_timeout_s}, time_budget_s {plan.time_budget_s}"
        + (f", budget.steps {plan.budget_steps}" if plan.budget_steps is not None else ""),
    ]
    lines += describe_runtime_env(plan.ray_runtime_env)
    return "\n".join(lines)
