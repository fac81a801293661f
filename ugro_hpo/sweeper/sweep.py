"""A Hydra multirun as a ugro_hpo study: the sweeper's settings become our config, each trial
runs the app as a Hydra job (`job`), and the sweep directory gets our results (summary.json,
trials.csv, report/) and the Optuna sweeper's ``optimization_results.yaml``.

The sweep passes the same boundary as the command line (`trust`, `ugro_hpo.security.startup`),
and ends as the command line does: one line and exit code 2 for a mistake in its input, 130
after Ctrl-C or SIGTERM, 3 when failed trials stopped it (the failure streak, or
``max_failure_rate``). Only light modules are imported here; the study's own imports happen
when it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError, UserError
from ugro_hpo.process_policy import skip_collection_at_exit
from ugro_hpo.sweeper.params import SweepSpace, objectives, parse_params
from ugro_hpo.sweeper.results import RESULTS_FILE

log = logging.getLogger("ugro_hpo.sweeper")
PROGRAM = "ugro_hpo sweeper"
INTERRUPTED_EXIT_CODE = 130
STOPPED_EXIT_CODE = 3


class SweepEnded(Exception):
    """The sweep ended without its trials (a mistake, a signal, failures): one line, a code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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

    def sweep(self, arguments: list[str]) -> None:
        """Run the study; how it ended is the exit code (see the module)."""
        from ugro_hpo.security.redaction import redact_text
        from ugro_hpo.sweeper.settings import in_sweeper_terms

        try:
            with _redacted_console():
                self._sweep(arguments)
        except (UserError, SweepEnded) as exc:
            message = in_sweeper_terms(exc) if isinstance(exc, UserError) else str(exc)
            line = redact_text(" ".join(message.split()))
            line = "".join(c if c.isprintable() else "?" for c in line)  # no terminal escapes
            sys.stderr.write(f"{PROGRAM}: error: {line}\n")
            sys.stderr.flush()
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C before the trials started (then the watch takes over)
            sys.stderr.write(f"{PROGRAM}: error: interrupted: exiting now; rerun the same command "
                             "to continue the study\n")  # fmt: skip
            raise SystemExit(INTERRUPTED_EXIT_CODE) from None

    def _sweep(self, arguments: list[str]) -> None:
        from ugro_hpo.config.plan import build_plan
        from ugro_hpo.pipeline import run
        from ugro_hpo.sweeper import hydra_compat
        from ugro_hpo.sweeper import settings as st
        from ugro_hpo.sweeper.console import forward_worker_output
        from ugro_hpo.sweeper.guard import SweepGuard
        from ugro_hpo.sweeper.job import HydraJob
        from ugro_hpo.sweeper.trust import begin_sweep, write_redacted_config

        s = self.settings
        begin_sweep(s, self.config)  # secrets registered, credentials refused: before all else
        st.check_settings(s)
        hydra_state = hydra_compat.hydra_state()  # the app's, for the trials' workers
        configure = self._custom_search_space()
        space, space_data = self._space(arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        _set_sweep_dir(self.config, sweep_dir)  # workers have other working directories
        cfg = st.study_config(s, str(self.config.hydra.job.name), sweep_dir, space_data)
        goals = space_data["objectives"]
        guard = SweepGuard(
            s["max_failure_rate"], n_jobs=int(s["n_jobs"]),
            n_trials=int(s["n_trials"]), scheduler_metric=st.scheduler_metric(s, goals),
            scheduler=str(s.get("scheduler")), ran_before=self._ran_before(cfg, s),
        )  # fmt: skip
        job = HydraJob(self.hydra_context, self.task_function, self.config, space,
                       cwd=os.getcwd(), hydra_state=hydra_state, configure=configure,
                       guard=guard, scheduler_metric=guard.scheduler_metric,
                       scheduler=str(s.get("scheduler")))  # fmt: skip
        build_plan(cfg, sweep_dir, job)  # every mistake found before anything is written
        forward_worker_output()
        logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's schema set-up
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_redacted_config(self.config, sweep_dir / "multirun.yaml")
        with job.watching_output():
            result = run(cfg, run_dir=str(sweep_dir), objective=job, release_ray=True)
        self._end(result, space, guard)

    def _end(self, result: Any, space: SweepSpace, guard: Any) -> None:
        """The results file of a sweep that ran to its end; a sweep that did not is an error."""
        from ugro_hpo.sweeper.results import optimization_results, write_optimization_results

        status = result.status
        if status == "interrupted":
            raise SweepEnded(
                "interrupted: finished trials are saved; rerun the same command to continue",
                INTERRUPTED_EXIT_CODE,
            )
        if status == "stopped":
            if guard.tripped:
                raise SweepEnded(str(guard.reason), guard.exit_code)
            reason = result.summary.get("reason")
            raise SweepEnded(
                f"study stopped: {reason}; fix the cause and rerun to continue", STOPPED_EXIT_CODE
            )
        results = optimization_results(result.records, result.plan.search_space, space)
        write_optimization_results(result.run_dir / RESULTS_FILE, results)
        if "solutions" in results:
            log.info("Number of Pareto solutions: %d", len(results["solutions"]))
        elif results["best_params"] is None:
            log.warning("no trial completed: %s has no best parameters", RESULTS_FILE)
        else:
            log.info("Best parameters: %s", results["best_params"])
            log.info("Best value: %s", results["best_value"])
        # Written: Python's exit need not search every loaded module's objects for garbage.
        skip_collection_at_exit()

    def _custom_search_space(self) -> Any:
        reference = self.settings.get("custom_search_space")
        if not reference:
            return None
        from ugro_hpo.objectives.custom import import_callable

        return import_callable(str(reference), "hydra.sweeper.custom_search_space")

    def _space(self, arguments: list[str]) -> tuple[SweepSpace, dict[str, Any]]:
        """The search space: ``params`` and the command line's sweeps, or a UGRO file."""
        from ugro_hpo.space.parsing import NO_PARAMETERS

        s = self.settings
        loader = self.hydra_context.config_loader
        given = s.get("search_space")
        sweeps = parse_params(s.get("params"), arguments, loader, search_space=given)
        if given and s.get("params") is not None:
            log.warning("hydra.sweeper.params and hydra.sweeper.search_space are both set; "
                        "params define the search space")  # fmt: skip
        elif given:
            log.warning("hydra.sweeper.search_space is deprecated (as in the Optuna sweeper "
                        "1.3); give the parameters with hydra.sweeper.params")  # fmt: skip
        if s.get("search_space_file"):
            if sweeps.parameters:
                raise ConfigError(
                    "hydra.sweeper.search_space_file: give the parameters either in the file or "
                    f"as sweeps ({', '.join(sweeps.parameters)}), not both"
                )
            return self._space_file(Path(str(s["search_space_file"])).resolve(), sweeps)
        data: dict[str, Any] = {"parameters": sweeps.parameters,
                                "objectives": objectives(s.get("direction"), s.get("metric"))}  # fmt: skip
        if not sweeps.parameters:  # every job runs the app's config as it is
            data["metadata"] = {NO_PARAMETERS: True}
        return sweeps, data

    @staticmethod
    def _space_file(path: Path, sweeps: SweepSpace) -> tuple[SweepSpace, dict[str, Any]]:
        """A UGRO search-space file: untrusted, so its names are checked first (`trust`)."""
        from ugro_hpo.security.limits import load_yaml
        from ugro_hpo.space import load_search_space
        from ugro_hpo.sweeper.trust import check_space_file

        if not path.is_file():
            raise ConfigError(f"hydra.sweeper.search_space_file: {path} is not a file")
        data = load_yaml(path.read_text(encoding="utf-8"), f"search space {path}")
        check_space_file(data, path)
        load_search_space(path)  # the schema, the expressions, the limits
        sweeps.keys = {str(name): str(name) for name in data.get("parameters") or {}}
        return sweeps, {**data, "metadata": {**(data.get("metadata") or {}), "file": str(path)}}

    @staticmethod
    def _ran_before(cfg: Any, s: dict[str, Any]) -> int:
        """Trials of a continued study that ran already (the failure rate's last group)."""
        from ugro_hpo.sweeper.settings import failure_rate_matters

        url = str(cfg.storage)
        if not (failure_rate_matters(s) and cfg.resume):
            return 0
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
            return 0
        from ugro_hpo.optimize.storage import open_storage, trials_that_ran

        return int(trials_that_ran(open_storage(url), str(cfg.study_name)) or 0)


def _set_sweep_dir(config: Any, sweep_dir: Path) -> None:
    from omegaconf import open_dict, read_write

    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = str(sweep_dir)


@contextlib.contextmanager
def _redacted_console() -> Iterator[None]:
    """While the sweep runs, what this process prints (Ray's copies of the workers' lines,
    our log lines through Hydra's handlers) is scrubbed of every known secret."""
    from ugro_hpo.process_policy import redacted_streams
    from ugro_hpo.security.redaction import redact_text
    from ugro_hpo.sweeper.trust import ScrubbingFilter

    handlers = logging.getLogger().handlers
    added = [(h, ScrubbingFilter(redact_text)) for h in handlers]
    for handler, scrubbing in added:
        handler.addFilter(scrubbing)
    try:
        with redacted_streams():
            yield
    finally:
        for handler, scrubbing in added:
            handler.removeFilter(scrubbing)
