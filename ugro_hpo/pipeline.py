"""One study, end to end. Data flows one way:

    config -> plan (validated, components checked) -> the Optuna study (created or continued)
    -> trials under Ray Tune (asked and told by our searcher) -> the study in storage
    -> summary (built once) -> files, report, trackers

`run` returns a `StudyResult` that tests and callers can inspect.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ugro_hpo.config.plan import LiveParts, Plan, describe, plan_and_parts

log = logging.getLogger("ugro_hpo")
# pandas is Ray Tune's heaviest import that is not Ray's (about 0.4 s).
LOADED_WHILE_RAY_STARTS = ("sqlalchemy.orm", "alembic.migration", "alembic.command",
                           "optuna.importance", "sklearn.ensemble", "pandas")  # fmt: skip
GP_LIBRARIES = ("torch", "scipy.optimize", "scipy.stats", "greenlet")
"""What Optuna's GPSampler imports at its first fit (about 4 s on two cores, which made that
one proposal the slowest of a study by far)."""


@dataclass
class StudyResult:
    """What a run did: the plan, its status, and (unless nothing ran) the summary and records.

    ``status`` is ``dry_run``, ``nothing_to_run``, or the summary's status (``complete``,
    ``interrupted``, ``stopped``, ``budget``, ``time_budget``, ``incomplete``).
    """

    plan: Plan
    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    records: list[Any] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir


def default_run_dir(cfg: Any) -> Path:
    """Where a run outside Hydra (e.g. from a test) writes: outputs/<study>/<timestamp>."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    return Path(str(cfg.outputs_dir)) / str(cfg.study_name) / stamp


def run(
    cfg: Any,
    run_dir: str | None = None,
    echo: bool = True,
    objective: Any = None,
    release_ray: bool = False,
) -> StudyResult:
    """Validate ``cfg``, run its study to ``n_trials`` trials that ran (or continue it) and
    write the results.

    ``echo=False`` keeps the end-of-study table off stdout (benchmarks, notebooks);
    ``objective``, an `Objective` object, replaces ``cfg.objective`` (the Hydra sweeper);
    ``release_ray=True`` (a command that exits after this study) ends the Ray this run
    started once its trials are done, while the results are written. A Ray the process used
    before is left as it was.
    """
    from ugro_hpo.execution.resources import placement_capacity, ray_in_use, settle

    started = time.time()
    release_ray = release_ray and not ray_in_use()
    given_run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
    plan, parts = plan_and_parts(cfg, given_run_dir, objective)
    # resources.gpu: auto decided, and a trial no node can run refused (Ray would wait for ever)
    plan = settle(plan, placement_capacity(plan), plan.ray_autoscaler)
    if plan.dry_run:
        print("Plan (dry run, nothing was run or written):\n" + describe(plan), flush=True)
        return StudyResult(plan=plan, status="dry_run")

    refuse_planted_links(plan, given_run_dir, parts)
    from ugro_hpo.execution.launcher import build_components, run_trials, start_ray, stop_ray
    from ugro_hpo.optimize.storage import open_storage, open_study, trials_that_ran
    from ugro_hpo.optimize.stored_study import remember_run
    from ugro_hpo.process_policy import Ahead, imports_ahead
    from ugro_hpo.results.snapshot import log_file, write_config_snapshot

    # Is there a study to continue, and anything left to run? Read-only, and only where a
    # database exists: a command that runs nothing leaves nothing, not even an empty database.
    storage = open_storage(plan.storage) if _storage_exists(plan.storage) else None
    ran = trials_that_ran(storage, plan.study_name) if storage and plan.resume else None
    if ran is not None:
        if ran >= plan.n_trials:
            print(f"study {plan.study_name} already has {ran} trials that ran and n_trials is "
                  f"{plan.n_trials}: nothing to run (raise n_trials to continue it, or set a new "
                  "study_name)", flush=True)  # fmt: skip
            return StudyResult(plan, "nothing_to_run", records=stored_records(storage, plan))
        log.info("continuing study %s: %d trials ran, target %d, %d to run, %d at a time (for a "
                 "new study: study_name=... or resume=false)", plan.study_name, ran, plan.n_trials,
                 plan.n_trials - ran, plan.parallel_jobs)  # fmt: skip
    objective = parts.objective
    objective.prepare(plan.resources)
    # While Ray starts (seconds spent mostly waiting for its processes), modules the study needs
    # later are imported on another thread (see `process_policy`): the database layer Optuna's
    # storage loads on first use, sklearn for the importances, the GP's and the report's
    # libraries. What both threads would import (Ray Tune's search module, which ray_compat
    # loads) is imported here first, and nothing is written there: a cluster that cannot be
    # joined must leave no database behind.
    ahead = imports_ahead(lambda: _load_ahead(plan), first=["ugro_hpo.execution.ray_compat"])
    start_ray(plan)  # a cluster that cannot be joined, or lacks what a trial asks for, fails here
    ahead.result()
    components = build_components(plan, parts)
    trackers = components.trackers
    trackers.connect()
    opened = open_study(plan, storage)  # opens (and creates) the database when not open yet
    remember_run(opened.study, plan)
    write_config_snapshot(plan)
    ray_released = None
    with log_file(plan):
        try:
            trackers.study_started(study_info(plan, opened, objective))
            outcome = None
            if ran is None:
                log.info("starting study %s: %d trials, %d at a time",
                         plan.study_name, plan.n_trials, plan.parallel_jobs)  # fmt: skip
            if plan.n_trials > opened.ran_and_running()[0]:
                outcome = run_trials(plan, opened, components)
            if release_ray:  # nothing below needs Ray
                ray_released = Ahead(stop_ray)  # overlaps the files (`process_policy`)
            return finish(plan, opened.reread(), time.time() - started, echo, trackers, outcome)
        finally:
            trackers.close()
            opened.close()
            if ray_released is not None:
                ray_released.result()


def refuse_planted_links(plan: Plan, run_dir: Path, parts: LiveParts) -> None:
    """Nothing of the run is written through a link planted under the outputs folder (see
    `ugro_hpo.security.paths`); checked before anything is written."""
    from ugro_hpo.security.paths import refuse_run_paths, sqlite_file

    paths = {"run directory": run_dir, "the run's .hydra folder": run_dir / ".hydra",
             "Ray's experiment directory": plan.ray_dir}  # fmt: skip
    database = sqlite_file(plan.storage)
    if database is not None:
        paths["storage"] = database
    for tracker in parts.trackers:
        if tracker.name == "wandb":
            paths["W&B's run files"] = tracker.dir / "wandb"
    refuse_run_paths(plan.outputs_dir, paths)


def _load_ahead(plan: Plan) -> None:
    """What the study imports later anyway (see `run`): the storage's database layer, sklearn
    for the importances, a Gaussian process's libraries when the sampler is one, and the
    plotting modules when there is a report to draw."""
    from ugro_hpo.process_policy import import_quietly

    import_quietly(*LOADED_WHILE_RAY_STARTS)
    if plan.sampler_name == "optuna.samplers.GPSampler":
        import_quietly(*GP_LIBRARIES)
    if plan.report:
        from ugro_hpo.results.report import load_plotting

        load_plotting()


def _storage_exists(url: str) -> bool:
    """A SQLite file that is there, or any server database (reading one creates nothing)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        return path != ":memory:" and Path(path).is_file()
    return True


def stored_records(storage: Any, plan: Plan) -> list[Any]:
    """The study's trials as records, read and nothing written."""
    import optuna

    from ugro_hpo.results.records import trial_records

    study = optuna.load_study(study_name=plan.study_name, storage=storage)
    return trial_records(study, plan.search_space)


def study_info(plan: Plan, opened: Any, objective: Any) -> Any:
    """How trackers describe the study: names, budget, and the fixed settings worth logging."""
    from ugro_hpo.security.redaction import redact_data
    from ugro_hpo.tracking.tracker import StudyInfo

    objective_settings = {k: v for k, v in plan.objective.items() if not k.startswith("_")}
    settings = flatten({"seed": plan.seed, "eval_every": plan.eval_every, "parallel_jobs": plan.parallel_jobs,
                        "resources": plan.resources, "objective": objective_settings})  # fmt: skip
    return StudyInfo(
        study_name=plan.study_name,
        resumed=opened.resumed,
        n_trials=plan.n_trials,
        max_steps=plan.max_steps,
        sampler=plan.sampler_name,
        scheduler=plan.scheduler["_target_"],
        search_space=plan.search_space.source,
        objectives=[
            {"name": o.name, "direction": o.direction} for o in plan.search_space.objectives
        ],
        describe=objective.describe(),
        settings=redact_data(settings),
        tags=redact_data(plan.tags),
        run_dir=plan.run_dir,
        study=opened.study,
    )


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``objective.fixed.lora_r``); ``_target_`` and co. dropped."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if str(key).startswith("_"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def finish(
    plan: Plan,
    study: Any,
    duration_s: float,
    echo: bool = True,
    trackers: Any = None,
    outcome: Any = None,
) -> StudyResult:
    """Build the summary once from the study, write the files, hand them to the trackers, and
    write summary.json last, with what the trackers did in it."""
    from ugro_hpo.optimize import protocol as p
    from ugro_hpo.optimize.stored_study import run_facts
    from ugro_hpo.results.console import summary_table
    from ugro_hpo.results.summary import summarize
    from ugro_hpo.results.writers import write_study_files, write_summary
    from ugro_hpo.security.redaction import redact_data, redact_url

    ran = sum(p.outcome_of(t) in p.RAN for t in study.get_trials(deepcopy=False))
    facts = {
        "status": _status(ran, plan.n_trials, outcome),
        "reason": getattr(outcome, "reason", None),
        "n_trials": plan.n_trials,
        "duration_s": round(duration_s, 3),
        "run_dir": str(plan.run_dir),
        "storage": redact_url(plan.storage),
        "ray_dir": redact_url(plan.ray_storage),  # results and trial checkpoints
        "search_space": plan.search_space.source,
        **run_facts(plan),
        "trackers": {name: spec["_target_"] for name, spec in plan.tracker_specs.items()},
    }
    space = plan.search_space
    summary = summarize(study, space, facts)
    files = write_study_files(study, space, summary, plan.run_dir, plan.report, plan.export_best)
    if trackers:
        trackers.study_finished(summary.data, files)
        summary.data["tracking"] = redact_data(trackers.status())
    write_summary(plan.run_dir, summary.data)
    if echo:
        print(summary_table(summary.data, summary.ordered[:5], space), flush=True)
        for line in trackers.messages if trackers else []:
            print(line, flush=True)
    return StudyResult(plan, summary.data["status"], summary.data, summary.records)


def _status(ran: int, n_trials: int, outcome: Any) -> str:
    """complete, or why not: interrupted, stopped (failures), budget, time_budget, incomplete."""
    if ran >= n_trials:
        return "complete"
    if outcome is not None and (outcome.status != "complete" or outcome.reason):
        return str(outcome.status)  # complete with a reason: nothing was left to run
    return "incomplete"
