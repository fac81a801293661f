"""One trial as a real Hydra job of the app, run inside a Ray worker.

The worker gets what Hydra's own launchers use: the app's task function, Hydra's context and
the sweep's config, plus Hydra's global state (its config store, with any structured configs the
app registered, and its version base). Each trial's overrides are composed into a job config
exactly as a multirun job's would be, and Hydra's `run_job` runs it: its own directory under
the sweep directory with ``.hydra/``, ``hydra.job.num`` (the Optuna trial number), the app's
logging, ``HydraConfig``, and the working-directory behaviour of the app's version base. The
task function's return value is the trial's objective value (a number, or a list or tuple for
several objectives); an exception or a non-finite value fails the trial with its reason.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from ugro_hpo.objectives.base import Objective, ReportFn, TrialContext
from ugro_hpo.sweeper.params import SweepSpace
from ugro_hpo.sweeper.reporting import reporting_to

_entered: set[str] = set()  # the sweeps whose Hydra state this process has taken on


class HydraJob(Objective):
    """Runs the app's task function with a trial's values as Hydra overrides."""

    parameters = None  # whatever the app's config has
    metrics = None
    reports_every_metric = False  # ugro_hpo.report is optional in an app

    def __init__(
        self,
        hydra_context: Any,
        task_function: Any,
        config: Any,
        space: SweepSpace,
        cwd: str,
        hydra_state: Any,
        configure: Any = None,
    ) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config
        self.space = space
        self.cwd = cwd
        self.hydra_state = hydra_state
        self.configure = configure  # custom_search_space: configure(cfg, trial), in the driver
        # Each trial gets its own unpickled copy of this object; the sweep is known by this.
        self.sweep_id = uuid.uuid4().hex
        module = getattr(task_function, "__module__", "?")
        self.name = f"hydra app {module}.{getattr(task_function, '__qualname__', task_function)}"

    def __getstate__(self) -> dict[str, Any]:
        """What travels to the trials' workers: not ``configure``, which runs in the driver
        only (its module need not be importable there)."""
        return {**self.__dict__, "configure": None}

    @property
    def extend_trial(self) -> Any:
        """The searcher's hook for ``custom_search_space`` (None without one): the function
        suggests more parameters on the Optuna trial, which become overrides like the rest."""
        if self.configure is None:
            return None
        return lambda trial: self.configure(self.config, trial)

    def describe(self) -> dict[str, str]:
        return {"objective": self.name}

    def __call__(
        self, params: dict[str, Any], report: ReportFn, context: TrialContext
    ) -> dict[str, float]:
        from hydra.core.utils import run_job
        from omegaconf import open_dict

        self._enter_hydra()
        overrides = self.space.overrides(params)
        with _working_directory(self.cwd):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(config):
                config.hydra.job.id = f"{config.hydra.job.name}_{context.number}"
                config.hydra.job.num = context.number
            with reporting_to(report):
                returned = run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
        # An exception the app raised is raised again here, and fails the trial with its text.
        return values_as_metrics(returned.return_value, context.metrics)

    def _enter_hydra(self) -> None:
        """Take on the driver's Hydra state, once per worker process and sweep (doing it again
        would rescan every installed Hydra plugin: about a tenth of a short trial's time)."""
        if self.sweep_id in _entered:
            return
        from hydra.core.singleton import Singleton
        from hydra.core.utils import setup_globals

        setup_globals()
        Singleton.set_state(self.hydra_state)
        _entered.add(self.sweep_id)


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    """The driver's working directory while the job is composed and run (relative paths in the
    app's config mean what they mean on the command line); the worker's own afterwards."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def values_as_metrics(value: Any, metrics: tuple[str, ...]) -> dict[str, float]:
    """The task function's return value as the trial's final metrics."""
    if isinstance(value, Mapping):
        return {str(k): _number(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) != len(metrics):
            raise ValueError(
                f"the task function returned {len(value)} values for {len(metrics)} "
                "objective(s); hydra.sweeper.direction needs one direction per value"
            )
        return {m: _number(v, m) for m, v in zip(metrics, value, strict=True)}
    if len(metrics) != 1:
        raise ValueError(
            f"the task function returned one value for {len(metrics)} objectives; return a "
            "list with one value per direction"
        )
    return {metrics[0]: _number(value, metrics[0])}


def _number(value: Any, name: str) -> float:
    """A number (a NumPy or PyTorch scalar too); the trainable refuses NaN and infinities."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"the task function returned {value!r} for {name!r}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"the task function returned a {type(value).__name__} for {name!r}, not a number"
        ) from None
    return number
