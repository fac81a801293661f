"""One trial as a real Hydra job of the app, run inside a Ray worker.

The worker gets what Hydra's own launchers use: the app's task function, Hydra's context and
the sweep's config, plus Hydra's global state (its config store, with any structured configs the
app registered, and its version base). Each trial's overrides are composed into a job config
exactly as a multirun job's would be, and Hydra's `run_job` runs it: its own directory under
the sweep directory with ``.hydra/``, ``hydra.job.num`` and ``hydra.job.id`` (the Optuna trial
number, which is the job's index as Hydra's launchers count them in a new study), the app's
logging, ``HydraConfig``, and the working-directory behaviour of the app's version base.

What the job writes of ours is scrubbed of every secret the driver knows (`trust`): the
``.hydra/`` files before the task function starts, and every log record the app's logging
writes to its job log. What the app prints reaches the sweep's console, a line at a time,
prefixed with the trial number (`console`). The task function's return value is the trial's
objective value (a number, or a list or tuple for several objectives); an exception or a
non-finite value fails the trial with its reason.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ugro_hpo.objectives.base import Objective, ReportFn, TrialContext
from ugro_hpo.sweeper.console import TrialOutputs
from ugro_hpo.sweeper.params import SweepSpace
from ugro_hpo.sweeper.reporting import reporting_to

_entered: set[str] = set()  # the sweeps whose Hydra state this process has taken on


class HydraJob(Objective):
    """Runs the app's task function with a trial's values as Hydra overrides."""

    parameters = None  # whatever the app's config has
    metrics = None
    reports_every_metric = False  # ugro_hpo.report is optional in an app
    # resources.gpu=auto, as for the app's own objectives that train: a GPU per trial where the
    # machine or cluster has GPUs (the sweeper cannot tell whether the app uses one).
    uses_gpu = True

    def __init__(
        self,
        hydra_context: Any,
        task_function: Any,
        config: Any,
        space: SweepSpace,
        cwd: str,
        hydra_state: Any,
        configure: Any = None,
        guard: Any = None,
        scheduler_metric: str | None = None,
        scheduler: str = "",
    ) -> None:
        from ugro_hpo.sweeper.trust import config_for_workers

        self.hydra_context = hydra_context
        self.task_function = task_function
        self.sweep_config = config  # as composed: the driver's only
        self.config = config_for_workers(config)  # what the workers compose their jobs from
        self.space = space
        self.cwd = cwd
        self.hydra_state = hydra_state
        self.configure = configure  # custom_search_space: configure(cfg, trial), in the driver
        self.guard = guard  # the driver's rules for ending the sweep (see `guard`)
        self.scheduler_metric = scheduler_metric
        self.scheduler = scheduler
        self.scrub: Callable[[str], str] | None = None  # set in the driver, by `prepare`
        self.scrub_files = True
        # Each trial gets its own unpickled copy of this object; the sweep is known by this.
        self.sweep_id = uuid.uuid4().hex
        self.outputs: TrialOutputs | None = TrialOutputs(self.sweep_id)  # the driver's only
        module = getattr(task_function, "__module__", "?")
        self.code_module = module  # its folder is shipped to a cluster that lacks it
        self.name = f"hydra app {module}.{getattr(task_function, '__qualname__', task_function)}"

    def __getstate__(self) -> dict[str, Any]:
        """What travels to the trials' workers: not ``configure`` (it runs in the driver only,
        and its module need not be importable there), the driver's guard, or the sweep's
        config as composed (the workers get it with the sweeper's settings redacted), or the
        driver's watch on the trials' output."""
        dropped = ("configure", "guard", "sweep_config", "outputs")
        return {**self.__dict__, **dict.fromkeys(dropped)}

    @property
    def extend_trial(self) -> Any:
        """The searcher's hook for ``custom_search_space`` (None without one): the function
        suggests more parameters on the Optuna trial, which become overrides like the rest."""
        if self.configure is None:
            return None
        return lambda trial: self.configure(self.sweep_config, trial)

    @property
    def listeners(self) -> tuple[Any, ...]:  # type: ignore[override]
        return () if self.outputs is None else (self.outputs,)

    def watching_output(self) -> contextlib.AbstractContextManager[None]:
        """In the driver, while the sweep runs: the ends of the trials' output taken off the
        console and noted (`console`)."""
        return contextlib.nullcontext() if self.outputs is None else self.outputs.watching()

    def trials_over(self) -> None:
        """The rest of the trials' output on the console before Ray goes (`console`)."""
        if self.outputs is not None:
            self.outputs.wait()

    def describe(self) -> dict[str, str]:
        return {"objective": self.name}

    def prepare(self, resources: Mapping[str, float]) -> None:
        """In the driver, once every secret of the sweep is known: the scrubber the workers
        use (digests of the secrets, never the secrets themselves)."""
        from ugro_hpo.security.digests import SecretDigests
        from ugro_hpo.sweeper.trust import job_files_may_hold_secrets

        self.scrub = SecretDigests.of_known().scrub
        self.scrub_files = job_files_may_hold_secrets(
            self.sweep_config, self.space.parameters, self.space.fixed
        )

    def __call__(
        self, params: dict[str, Any], report: ReportFn, context: TrialContext
    ) -> dict[str, float]:
        from hydra.core.utils import run_job
        from omegaconf import open_dict

        from ugro_hpo.sweeper.console import echoed
        from ugro_hpo.sweeper.trust import scrubbing_context

        # Whatever the trial prints, from here on, is echoed, and its end of output written
        # even when composing its config fails (the driver waits for it, `console`).
        with echoed(context.number, self.sweep_id):
            self._enter_hydra()
            overrides = self.space.overrides(params)
            hydra_context, cwd = self._on_this_node()
            with _working_directory(cwd):
                config = hydra_context.config_loader.load_sweep_config(self.config, overrides)
                with open_dict(config):
                    config.hydra.job.id = str(context.number)
                    config.hydra.job.num = context.number
                checked = _checked_report(report, self.scheduler_metric, self.scheduler)
                with reporting_to(checked):
                    returned = run_job(
                        hydra_context=scrubbing_context(
                            hydra_context, self.scrub, self.scrub_files
                        ),
                        task_function=self.task_function,
                        config=config,
                        job_dir_key="hydra.sweep.dir",
                        job_subdir_key="hydra.sweep.subdir",
                    )
                    # An exception the app raised is raised again here (Hydra says which job
                    # on stderr first), and fails the trial with its text.
                    value = returned.return_value
        return values_as_metrics(value, context.metrics)

    def _on_this_node(self) -> tuple[Any, str]:
        """The Hydra context and working directory of a job here: the driver's, or, where the
        app's folder was shipped (a cluster's node need not have the driver's files), the
        copy's: the app's config folder and the working directory at their places in it."""
        from ugro_hpo.execution.code_shipping import in_copy, shipped_copy
        from ugro_hpo.sweeper.hydra_compat import moved_config_loader

        shipped = shipped_copy()
        if shipped is None:
            return self.hydra_context, self.cwd
        origin, copy = shipped
        cwd = in_copy(self.cwd, origin, copy)
        if not os.path.isdir(cwd):  # the driver ran outside the shipped folder
            cwd = str(copy)
        moved = moved_config_loader(self.hydra_context, lambda path: in_copy(path, origin, copy))
        return moved, cwd

    def _enter_hydra(self) -> None:
        """Take on the driver's Hydra state, once per worker process and sweep (doing it again
        would rescan every installed Hydra plugin: about a tenth of a short trial's time)."""
        if self.sweep_id in _entered:
            return
        from ugro_hpo.sweeper.hydra_compat import enter_hydra_state

        enter_hydra_state(self.hydra_state)
        _entered.add(self.sweep_id)


def _checked_report(report: ReportFn, watched: str | None, scheduler: str) -> Callable[..., None]:
    """``report`` that, at a trial's first report, raises in the app when the scheduler's
    metric is missing (the driver has heard the report by then, and ends the sweep)."""
    reported = False

    def checked(step: int, **metrics: Any) -> None:
        nonlocal reported
        report(step, **metrics)
        first, reported = not reported, True
        if first and watched is not None and watched not in metrics:
            from ugro_hpo.sweeper.guard import missing_metric_message

            raise ValueError(missing_metric_message(scheduler, watched, sorted(metrics)))

    return checked


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


class UnusableReturn(ValueError):
    """The task function returned, but nothing a study can use (no number, NaN, too few
    values): the trial fails, and as in the Optuna sweeper this is no failure of the app, so
    ``max_failure_rate`` does not count it (the failure streak does)."""


def values_as_metrics(value: Any, metrics: tuple[str, ...]) -> dict[str, float]:
    """The task function's return value as the trial's final metrics."""
    if isinstance(value, Mapping):
        return {str(k): _number(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) != len(metrics):
            raise UnusableReturn(
                f"the task function returned {len(value)} values for {len(metrics)} "
                "objective(s); hydra.sweeper.direction needs one direction per value"
            )
        return {m: _number(v, m) for m, v in zip(metrics, value, strict=True)}
    if len(metrics) != 1:
        raise UnusableReturn(
            f"the task function returned one value for {len(metrics)} objectives; return a "
            "list with one value per direction"
        )
    return {metrics[0]: _number(value, metrics[0])}


def _number(value: Any, name: str) -> float:
    """A finite number (a NumPy or PyTorch scalar too)."""
    if isinstance(value, bool) or value is None:
        raise UnusableReturn(f"the task function returned {value!r} for {name!r}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnusableReturn(
            f"the task function returned a {type(value).__name__} for {name!r}, not a number"
        ) from None
    if not math.isfinite(number):
        raise UnusableReturn(f"the task function returned {number} for {name!r}")
    return number
