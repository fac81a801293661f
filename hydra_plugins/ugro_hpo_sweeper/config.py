# ruff: noqa: UP006, UP035, UP045  (typing forms OmegaConf reads, see below)
"""The sweeper's config (``hydra.sweeper``) and its sampler group, registered with Hydra.

Hydra imports every module under ``hydra_plugins`` whenever any Hydra app starts, so this one
imports nothing but dataclasses and Hydra's config store. Hydra runs it without registering it
in ``sys.modules``, so its annotations must be real types (no ``from __future__ import
annotations``), written in the forms OmegaConf reads. The keys the Optuna sweeper has mean
the same here; the rest are what Ray Tune and ugro_hpo add.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class RayConf:
    address: Optional[str] = None  # null: start Ray here; "auto" or host:port: join a cluster
    num_cpus: Optional[int] = None
    autoscaler: bool = False  # true: the cluster adds nodes on demand (resources are waited for)


@dataclass
class ResourcesConf:
    cpu: float = 1.0  # per trial
    gpu: float = 0.0  # fractions share a GPU (0.5: two trials per card)


@dataclass
class UgroHpoSweeperConf:
    _target_: str = "hydra_plugins.ugro_hpo_sweeper.ugro_hpo_sweeper.UgroHpoSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    _recursive_: bool = False  # the sampler is built by the study, once its seed is known

    # -- the Optuna sweeper's keys ---------------------------------------------------------------
    sampler: Any = MISSING  # from the sampler group (MISSING lets the default, tpe, stand)
    direction: Any = "minimize"  # or a list, one per value the task function returns
    study_name: Optional[str] = None  # null: the app's job name
    storage: Optional[str] = None  # null: a SQLite file in the sweep directory
    n_trials: int = 20  # trials that must run (complete or stopped early)
    n_jobs: int = 2  # trials at once
    params: Optional[Dict[str, Any]] = (
        None  # key: Hydra sweep syntax (choice, range, interval, tag)
    )
    custom_search_space: Optional[str] = None  # package.module:configure(cfg, trial)

    # -- what ugro_hpo adds ----------------------------------------------------------------------
    search_space_file: Optional[str] = None  # a UGRO search-space YAML, instead of params
    metric: Any = None  # name(s) of the value(s) the task returns and reports (null: objective)
    scheduler: str = "fifo"  # asha | hyperband | median | fifo (early stopping needs report())
    max_steps: int = 100  # the most steps a job reports (ASHA's and Hyperband's max_t)
    grace_period: int = 1  # steps every trial runs before a scheduler may stop it
    tracking: str = "none"  # none | mlflow | wandb | dual
    resume: bool = True  # continue a study of the same name and storage
    report: bool = True  # plots and an HTML page in the sweep directory
    ray: RayConf = field(default_factory=RayConf)
    resources: ResourcesConf = field(default_factory=ResourcesConf)
    overrides: List[str] = field(default_factory=list)  # any other ugro_hpo key=value


def _sampler(target: str, **options: Any) -> Dict[str, Any]:
    return {"_target_": target, "seed": None, **options}


SAMPLERS = {
    "tpe": _sampler(
        "optuna.samplers.TPESampler", n_startup_trials=10, multivariate=True, constant_liar=True
    ),
    "random": _sampler("optuna.samplers.RandomSampler"),
    "grid": _sampler("ugro_hpo.optimize.samplers.grid_sampler", _partial_=True),
    "cmaes": _sampler("optuna.samplers.CmaEsSampler", n_startup_trials=1),
    "nsgaii": _sampler("optuna.samplers.NSGAIISampler", population_size=20),
    "gp": _sampler("optuna.samplers.GPSampler", n_startup_trials=10),
    "qmc": _sampler("optuna.samplers.QMCSampler", qmc_type="sobol", scramble=True),
    "auto": _sampler(
        "ugro_hpo.optimize.samplers.auto_sampler", _partial_=True, n_startup_trials=10
    ),
}

store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="ugro_hpo", node=UgroHpoSweeperConf, provider="ugro_hpo")
for _name, _node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="ugro_hpo")
