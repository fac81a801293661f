"""The sweeper's settings (``hydra.sweeper``) checked, and written into our own config.

Every mistake is a `ConfigError` naming the ``hydra.sweeper`` key; a value where the config
group ``hydra/sweeper/sampler`` is expected gets the group's form in the hint. Sampler targets
of the Optuna sweeper's own presets (its grid, its NSGA factories) build the same samplers
here, and ``motpe``, which Optuna removed, is refused with the reason.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError, UserError

SCHEDULERS = ("asha", "hyperband", "median", "fifo")
TRACKING = ("none", "mlflow", "wandb", "dual")
SAMPLER_GROUP = ("tpe", "random", "grid", "cmaes", "nsgaii", "nsgaiii", "gp", "qmc", "auto")
GRID = "ugro_hpo.optimize.samplers.grid_sampler"
# The Optuna sweeper's preset targets, and what builds the same sampler here.
SAMPLER_TARGETS = {
    "optuna.samplers.GridSampler": GRID,
    "hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaii_sampler": "optuna.samplers.NSGAIISampler",
    "hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaiii_sampler": "optuna.samplers.NSGAIIISampler",
}
REMOVED_SAMPLERS = {
    "optuna.samplers.MOTPESampler",
    "hydra_plugins.hydra_optuna_sweeper.config.raise_motpe_removed",
}


def check_settings(s: Mapping[str, Any]) -> None:
    """What can be checked of the settings alone, before anything is built or written."""
    for key, allowed in (("scheduler", SCHEDULERS), ("tracking", TRACKING)):
        if str(s.get(key)) not in allowed:
            raise ConfigError(
                f"hydra.sweeper.{key}: {s.get(key)!r}; use one of {', '.join(allowed)}"
            )
    rate = s["max_failure_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ConfigError(
            f"hydra.sweeper.max_failure_rate: {rate!r}; give a share between 0.0 (stop at the "
            "first failure) and 1.0 (never stop for failures)"
        )
    overrides = s.get("overrides")
    if overrides is not None and (
        not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides)
    ):
        raise ConfigError(
            "hydra.sweeper.overrides: give a list of key=value strings, e.g. "
            "\"hydra.sweeper.overrides=['max_consecutive_failures=0']\""
        )


def sampler_spec(value: Any) -> dict[str, Any]:
    """The sampler to build, from the ``hydra/sweeper/sampler`` group (or a ``_target_``)."""
    if not isinstance(value, Mapping) or not isinstance(value.get("_target_"), str):
        shown = value if not isinstance(value, Mapping) else dict(value)
        name = value if isinstance(value, str) and value in SAMPLER_GROUP else "tpe"
        raise ConfigError(
            f"hydra.sweeper.sampler: {shown!r} is a value where the config group "
            f"hydra/sweeper/sampler is expected; choose a sampler with hydra/sweeper/sampler="
            f"{name} (one of {', '.join(SAMPLER_GROUP)}), and set its options with "
            "hydra.sweeper.sampler.<option>=..."
        )
    spec = dict(value)
    target = spec["_target_"]
    if target in REMOVED_SAMPLERS:
        raise ConfigError(
            "hydra/sweeper/sampler=motpe: the 'motpe' sampler was removed in Optuna 4.0; use "
            "hydra/sweeper/sampler=tpe, whose TPESampler handles several objectives"
        )
    spec["_target_"] = SAMPLER_TARGETS.get(target, target)
    if spec["_target_"] == GRID:
        spec["_partial_"] = True
    return spec


def study_config(s: Mapping[str, Any], job_name: str, sweep_dir: Path,
                 space_data: dict[str, Any]) -> Any:  # fmt: skip
    """Our config for the study, built from the settings model (`config.schema`) as the
    command line would compose it: the model's defaults, the scheduler and tracking options,
    then ``hydra.sweeper.overrides``, then the sweeper's own settings (values, not override
    strings: paths and URLs need no quoting). No Hydra composition runs inside the app's."""
    from omegaconf import OmegaConf, open_dict

    from ugro_hpo.config.compose import apply_overrides, group_option, register_resolvers
    from ugro_hpo.config.schema import AppSettings

    register_resolvers()  # our config's own resolvers, for when it is resolved
    sampler = sampler_spec(s["sampler"])
    seed = sampler.pop("seed", None)
    cfg = OmegaConf.structured(AppSettings)
    cfg.scheduler = group_option("scheduler", str(s["scheduler"]))
    cfg.tracking = group_option("tracking", str(s["tracking"]))
    apply_overrides(cfg, [str(o) for o in s["overrides"] or []], "hydra.sweeper.overrides")
    values = {
        "study_name": str(s["study_name"] or job_name),
        "outputs_dir": str(sweep_dir),
        "n_trials": s["n_trials"],
        "parallel_jobs": s["n_jobs"],
        "max_steps": s["max_steps"],
        "eval_every": s["grace_period"],
        "resume": s["resume"],
        "report": s["report"],
        "seed": int(seed) if seed is not None else random.randrange(2**31),
        "storage": str(s["storage"]) if s["storage"] else f"sqlite:///{sweep_dir / 'optuna.db'}",
    }
    with open_dict(cfg):
        for key, value in values.items():
            cfg[key] = value
        for section in ("ray", "resources"):
            for key, value in (s[section] or {}).items():
                cfg[section][key] = value
        cfg.search = sampler
        cfg.search_space = space_data
        cfg.search_space_file = None
        cfg.objective = {"_target_": "ugro_hpo.sweeper.job.HydraJob"}
        # Ray prints the workers' output (the app's) on this console (see `console`).
        cfg.verbose = max(int(cfg.verbose), 1)
    return cfg


def scheduler_metric(s: Mapping[str, Any], objectives: list[dict[str, str]]) -> str | None:
    """The metric a scheduler other than FIFO watches (one objective), or None."""
    if str(s.get("scheduler")) == "fifo" or len(objectives) != 1:
        return None
    return objectives[0]["name"]


def failure_rate_matters(s: Mapping[str, Any]) -> bool:
    """Does the group size (and so the trials that ran before) change what the rate decides?"""
    return 0.0 < float(s["max_failure_rate"]) < 1.0


# Our config's keys as the sweeper's user knows them, for error messages.
SWEEPER_KEYS = {"n_trials": "n_trials", "parallel_jobs": "n_jobs", "max_steps": "max_steps",
                "eval_every": "grace_period", "storage": "storage", "study_name": "study_name",
                "search": "sampler", "seed": "sampler.seed", "resources": "resources",
                "ray": "ray",
                "scheduler": "scheduler"}  # fmt: skip


def in_sweeper_terms(error: UserError) -> str:
    """An error about our plan's ``n_trials`` reads ``hydra.sweeper.n_trials: ...``: the key is
    the error's own (`UserError.key`), mapped to the sweeper's name for it."""
    key = error.key
    if key is None:
        return str(error)
    base = key.split(".", 1)[0]
    if key in SWEEPER_KEYS:
        ours = SWEEPER_KEYS[key]
    elif base in SWEEPER_KEYS:
        ours = SWEEPER_KEYS[base] + key[len(base) :]
    else:
        return str(error)
    return f"hydra.sweeper.{ours}: {error.reason}"
