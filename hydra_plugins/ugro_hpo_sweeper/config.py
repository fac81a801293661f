# ruff: noqa: UP006, UP035, UP045  (typing forms OmegaConf reads, see below)
"""The sweeper's config (``hydra.sweeper``) and its sampler group, registered with Hydra.

Hydra imports every module under ``hydra_plugins`` whenever any Hydra app starts, so this one
imports nothing but dataclasses and Hydra's config store. Hydra runs it without registering it
in ``sys.modules``, so its annotations must be real types (no ``from __future__ import
annotations``), written in the forms OmegaConf reads.

The keys of Hydra's Optuna sweeper mean the same here, with its defaults; the rest are what
Ray Tune and ugro_hpo add. Each sampler preset takes every option of its Optuna constructor,
with the defaults of the Optuna sweeper's presets of the 1.4 line (the line that runs on the
Optuna this project uses), so ``hydra/sweeper/sampler=cmaes hydra.sweeper.sampler.popsize=4``
and a config written for that sweeper search the same way here.
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
    # Ray's runtime_env for the jobs (working_dir, py_modules, pip, env_vars); joining a cluster
    # without a working_dir ships the app's own folder
    runtime_env: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ResourcesConf:
    cpu: float = 1.0  # per trial
    gpu: float = 0.0  # fractions share a GPU (0.5: two trials per card)


@dataclass
class UgroHpoSweeperConf:
    _target_: str = "hydra_plugins.ugro_hpo_sweeper.ugro_hpo_sweeper.UgroHpoSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    _recursive_: bool = False  # the sampler is built by the study, once its seed is known

    # -- the Optuna sweeper's keys, its defaults -------------------------------------------------
    sampler: Any = MISSING  # the hydra/sweeper/sampler group (MISSING lets the default, tpe, stand)
    direction: Any = "minimize"  # or a list, one per value the task function returns
    storage: Optional[str] = None  # null: a SQLite file in the sweep directory
    study_name: Optional[str] = None  # null: the app's job name
    n_trials: int = 20  # trials that must run (complete or stopped early)
    n_jobs: int = 2  # trials at once
    max_failure_rate: float = 0.0  # failed share of each n_jobs trials that ends the sweep
    search_space: Optional[Dict[str, Any]] = None  # deprecated form of params (Optuna sweeper 1.3)
    params: Optional[Dict[str, Any]] = None  # key: Hydra sweep syntax (choice, range, interval)
    custom_search_space: Optional[str] = None  # package.module.configure(cfg, trial)

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


# -- the hydra/sweeper/sampler group: Optuna's constructor options, the Optuna sweeper's defaults


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    consider_prior: Optional[bool] = None
    prior_weight: Optional[float] = None
    consider_magic_clip: Optional[bool] = None
    consider_endpoints: Optional[bool] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    group: bool = False
    warn_independent_sampling: Optional[bool] = None
    constant_liar: bool = False  # true: parallel trials spread out (advised with n_jobs > 1)
    constraints_func: Optional[Any] = None


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GridSamplerConf:
    # Every combination of the parameters' values (floats need a step): the sweeper builds the
    # grid from the search space (the target is the Optuna sweeper's, which does the same).
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: Optional[int] = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: Optional[int] = None
    x0: Optional[Dict[str, Any]] = None
    sigma0: Optional[float] = None
    n_startup_trials: int = 1
    independent_sampler: Optional[Any] = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: Optional[Any] = None
    popsize: Optional[int] = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    source_trials: Optional[Any] = None


@dataclass
class NSGAIISamplerConf:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50
    mutation_prob: Optional[float] = None
    mutation: Optional[Any] = None
    crossover: Optional[Any] = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Optional[Any] = None


@dataclass
class NSGAIIISamplerConf(NSGAIISamplerConf):
    _target_: str = "optuna.samplers.NSGAIIISampler"
    reference_points: Optional[List[List[float]]] = None
    dividing_parameter: int = 3


@dataclass
class MOTPESamplerConf:
    # Removed from Optuna (4.0); kept so that a config choosing it gets the reason, not
    # Hydra's "Could not find". Its options are those of the Optuna sweeper 1.3's preset.
    _target_: str = "optuna.samplers.MOTPESampler"
    seed: Optional[int] = None
    consider_prior: bool = True
    prior_weight: float = 1.0
    consider_magic_clip: bool = True
    consider_endpoints: bool = False
    n_startup_trials: int = 10
    n_ehvi_candidates: int = 24


@dataclass
class GPSamplerConf:
    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = None
    independent_sampler: Optional[Any] = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    constraints_func: Optional[Any] = None
    warn_independent_sampling: bool = True


@dataclass
class QMCSamplerConf:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: Optional[int] = None
    qmc_type: str = "sobol"
    scramble: bool = False
    independent_sampler: Optional[Any] = None
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


@dataclass
class AutoSamplerConf:
    # ugro_hpo's own: a Gaussian process for small numeric spaces, multivariate TPE otherwise.
    _target_: str = "ugro_hpo.optimize.samplers.auto_sampler"
    _partial_: bool = True
    seed: Optional[int] = None
    n_startup_trials: int = 10


SAMPLERS: Dict[str, Any] = {
    "tpe": TPESamplerConf,
    "random": RandomSamplerConf,
    "grid": GridSamplerConf,
    "cmaes": CmaEsSamplerConf,
    "nsgaii": NSGAIISamplerConf,
    "nsgaiii": NSGAIIISamplerConf,
    "motpe": MOTPESamplerConf,
    "gp": GPSamplerConf,
    "qmc": QMCSamplerConf,
    "auto": AutoSamplerConf,
}

store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="ugro_hpo", node=UgroHpoSweeperConf, provider="ugro_hpo")
for _name, _node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="ugro_hpo")
