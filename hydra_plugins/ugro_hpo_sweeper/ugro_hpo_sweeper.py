"""The Hydra plugin class; the work is done by `ugro_hpo.sweeper`, imported only when a sweep
starts (Hydra imports this module for every app it runs)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.ugro_hpo_sweeper import config as _registered  # noqa: F401  (the configs)


class UgroHpoSweeper(Sweeper):
    """Runs a Hydra app's jobs as the trials of a ugro_hpo study (Optuna + Ray Tune)."""

    def __init__(self, **settings: Any) -> None:
        from ugro_hpo.sweeper.sweep import HydraSweep

        self.sweep_impl = HydraSweep(settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.sweep_impl.setup(hydra_context, task_function, config)

    def sweep(self, arguments: list[str]) -> None:
        self.sweep_impl.sweep(arguments)
