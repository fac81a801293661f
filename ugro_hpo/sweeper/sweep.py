"""A Hydra multirun as a ugro_hpo study: the sweeper's settings become our config, each trial
runs the app as a Hydra job (`job`), and the sweep directory gets our results (summary.json,
trials.csv, report/) and the Optuna sweeper's ``optimization_results.yaml``.

Only light modules are imported here; the study's own imports happen when it runs.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError, UserError
from ugro_hpo.sweeper.params import SweepSpace, objectives, parse_params

log = logging.getLogger("ugro_hpo.sweeper")
RESULTS_FILE = "optimization_results.yaml"
SCHEDULERS = ("asha", "hyperband", "median", "fifo")
TRACKING = ("none", "mlflow", "wandb", "dual")


class HydraSweep:
    """What the plugin class delegates to (see ``hydra_plugins/ugro_hpo_sweeper``)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        self.settings: dict[str, Any] = {
            k: OmegaConf.to_container(v, resolve=True)
            if isinstance(v, DictConfig | ListConfig)
            else v
            for k, v in settings.items()
        }
        self.hydra_context: Any = None
        self.task_function: Any = None
        self.config: Any = None

    def setup(self, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        """Run the study; a mistake in the sweeper's input is one line and exit code 2."""
        try:
            return self._sweep(arguments)
        except UserError as exc:
            from ugro_hpo.security.redaction import redact_text

            message = _in_sweeper_terms(str(exc))
            sys.stderr.write(f"ugro_hpo sweeper: error: {redact_text(message)}\n")
            raise SystemExit(exc.exit_code) from None

    def _sweep(self, arguments: list[str]) -> Any:
        from hydra.core.singleton import Singleton
        from omegaconf import OmegaConf, open_dict

        from ugro_hpo.pipeline import run
        from ugro_hpo.sweeper.job import HydraJob

        s = self.settings
        hydra_state = Singleton.get_state()  # the app's, for the trials' workers
        _check_choice(s, "scheduler", SCHEDULERS)
        _check_choice(s, "tracking", TRACKING)
        configure = None
        if s.get("custom_search_space"):
            from ugro_hpo.objectives.custom import import_callable

            configure = import_callable(
                str(s["custom_search_space"]), "hydra.sweeper.custom_search_space"
            )
        space, space_data = self._space(arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        with open_dict(self.config):
            self.config.hydra.sweep.dir = str(sweep_dir)  # workers have other working dirs
        cfg = self._study_config(sweep_dir, space_data)
        job = HydraJob(self.hydra_context, self.task_function, self.config, space,
                       cwd=os.getcwd(), hydra_state=hydra_state, configure=configure)  # fmt: skip
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        result = run(cfg, run_dir=str(sweep_dir), objective=job, release_ray=True)
        write_optimization_results(sweep_dir / RESULTS_FILE, result.summary)
        _skip_collecting_at_exit()
        return result

    def _space(self, arguments: list[str]) -> tuple[SweepSpace, dict[str, Any]]:
        """The search space: ``params`` and the command line's sweeps, or a UGRO file."""
        s = self.settings
        loader = self.hydra_context.config_loader
        if s.get("search_space_file"):
            from ugro_hpo.space import load_search_space  # checks the file before anything runs

            sweeps = parse_params(s.get("params"), arguments, loader, require=False)
            if sweeps.parameters:
                raise ConfigError(
                    "hydra.sweeper.search_space_file: give the parameters either in the file or "
                    f"as sweeps ({', '.join(sweeps.parameters)}), not both"
                )
            path = Path(str(s["search_space_file"])).resolve()
            load_search_space(path)
            from ugro_hpo.security.limits import load_yaml

            data = load_yaml(path.read_text(encoding="utf-8"), f"search space {path}")
            sweeps.keys = {str(name): str(name) for name in data.get("parameters") or {}}
            return sweeps, {**data, "metadata": {**(data.get("metadata") or {}), "file": str(path)}}
        sweeps = parse_params(s.get("params"), arguments, loader)
        data = {"parameters": sweeps.parameters,
                "objectives": objectives(s.get("direction"), s.get("metric"))}  # fmt: skip
        return sweeps, data

    def _study_config(self, sweep_dir: Path, space_data: dict[str, Any]) -> Any:
        """Our config for the study, composed as the command line would, then the sweeper's
        settings written in (values, not override strings: paths and URLs need no quoting)."""
        from omegaconf import open_dict

        s = self.settings
        sampler = dict(s.get("sampler") or {"_target_": "optuna.samplers.TPESampler"})
        seed = sampler.get("seed")
        cfg = _compose_outside_the_app(
            f"scheduler={s.get('scheduler', 'fifo')}",
            f"tracking={s.get('tracking', 'none')}",
            "objective=synthetic",  # a placeholder: the trials run the app (see `job`)
            *[str(o) for o in s.get("overrides") or []],
        )
        values = {
            "study_name": str(s.get("study_name") or self.config.hydra.job.name),
            "outputs_dir": str(sweep_dir),
            "n_trials": s.get("n_trials", 20),
            "parallel_jobs": s.get("n_jobs", 2),
            "max_steps": s.get("max_steps", 100),
            "eval_every": s.get("grace_period", 1),
            "resume": bool(s.get("resume", True)),
            "report": bool(s.get("report", True)),
            "seed": int(seed) if seed is not None else random.randrange(2**31),
        }
        with open_dict(cfg):
            for key, value in values.items():
                cfg[key] = value
            if s.get("storage"):
                cfg.storage = str(s["storage"])
            else:
                cfg.storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
            cfg.ray.address = (s.get("ray") or {}).get("address")
            cfg.ray.num_cpus = (s.get("ray") or {}).get("num_cpus")
            cfg.ray.autoscaler = bool((s.get("ray") or {}).get("autoscaler", False))
            for key, value in (s.get("resources") or {}).items():
                cfg.resources[key] = value
            cfg.search = sampler
            cfg.search_space = space_data
            cfg.search_space_file = None
            cfg.objective = {"_target_": "ugro_hpo.sweeper.job.HydraJob"}
        return cfg


# Our config's keys as the sweeper's user knows them, for error messages.
SWEEPER_KEYS = {"n_trials": "n_trials", "parallel_jobs": "n_jobs", "max_steps": "max_steps",
                "eval_every": "grace_period", "storage": "storage", "study_name": "study_name",
                "search": "sampler", "seed": "sampler.seed", "resources": "resources",
                "ray.address": "ray.address", "ray.autoscaler": "ray.autoscaler"}  # fmt: skip


def _in_sweeper_terms(message: str) -> str:
    """``n_trials: ...`` from our plan reads ``hydra.sweeper.n_trials: ...``."""
    key, sep, rest = message.partition(":")
    base = key.split(".", 1)[0]
    if sep and (key in SWEEPER_KEYS or base in SWEEPER_KEYS):
        ours = SWEEPER_KEYS.get(key) or SWEEPER_KEYS[base] + key[len(base) :]
        return f"hydra.sweeper.{ours}:{rest}"
    return message


def _skip_collecting_at_exit() -> None:
    """Once the sweep's results are written: Python's exit would search the objects of every
    module the study loaded (Ray, Optuna, sklearn, matplotlib) for garbage, about 1-1.5 s of
    the sweep command's wall time for memory the process is giving back anyway. Freezing them
    at exit skips that search; every file of ours is closed by then, and Python promises no
    finalizer for an object still alive at exit."""
    import atexit
    import gc

    atexit.register(gc.freeze)


def _check_choice(settings: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    if str(settings.get(key)) not in allowed:
        raise ConfigError(
            f"hydra.sweeper.{key}: {settings.get(key)!r}; use one of {', '.join(allowed)}"
        )


def _compose_outside_the_app(*overrides: str) -> Any:
    """Compose our own config while the app's Hydra is running: Hydra's global state (the
    app's config search path, job name and version base) is saved, cleared for the
    composition, and put back as it was."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    from ugro_hpo.config.compose import compose, register_resolvers

    saved = Singleton.get_state()
    GlobalHydra.instance().clear()
    try:
        return compose(*overrides)
    finally:
        Singleton.set_state(saved)
        register_resolvers()  # our config's own resolvers, for when it is resolved


def write_optimization_results(path: Path, summary: dict[str, Any]) -> None:
    """What the Optuna sweeper writes (``name``, ``best_params``, ``best_value``; or
    ``solutions`` with several objectives), so scripts that read it keep working."""
    from omegaconf import OmegaConf

    names = [o["name"] for o in summary.get("objectives") or []]
    results: dict[str, Any] = {"name": "ugro_hpo"}
    if len(names) > 1:
        results["solutions"] = [
            {"params": entry["params"], "values": [entry["metrics"].get(n) for n in names]}
            for entry in summary.get("pareto_front") or []
        ]
    elif summary.get("best"):
        best = summary["best"]
        results["best_params"] = best["params"]
        results["best_value"] = best["metrics"].get(names[0])
    else:
        log.warning("no trial completed: %s has no best parameters", path.name)
        results["best_params"] = None
        results["best_value"] = None
    OmegaConf.save(OmegaConf.create(results), path)
