"""One study, end to end: plan, build, open the study, run the trials, write the results.

Data flows one way: config -> plan -> components -> Optuna study -> Ray Tune -> storage ->
files. `run` returns a `StudyResult` that tests and callers can inspect.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ugro_hpo.plan import Plan, build_plan, describe

log = logging.getLogger("ugro_hpo")


@dataclass
class StudyResult:
    """What a run did: the plan, its status, and (unless a dry run) the summary and records."""

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


def run(cfg: Any, run_dir: str | None = None, echo: bool = True) -> StudyResult:
    """Validate ``cfg``, run its study to ``n_trials`` (or resume it) and write the results.

    ``echo=False`` keeps the end-of-study table off stdout (benchmarks, notebooks).
    """
    started = time.time()
    plan = build_plan(cfg, run_dir or default_run_dir(cfg))
    if plan.dry_run:
        print("Plan (dry run, nothing was run or written):\n" + describe(plan), flush=True)
        return StudyResult(plan=plan, status="dry_run")

    from ugro_hpo.launcher import build_components, ensure_ray, run_trials
    from ugro_hpo.snapshot import log_file, write_config_snapshot
    from ugro_hpo.storage import open_study
    from ugro_hpo.stored import remember_run

    components = build_components(plan)
    objective = plan.checked_objective
    objective.prepare(plan.resources)
    if plan.ray_address:
        ensure_ray(plan)  # a cluster that cannot be joined fails before anything is written
    trackers = components.trackers
    trackers.connect()
    opened = open_study(plan)
    remember_run(opened.study, plan)
    write_config_snapshot(plan)
    with log_file(plan):
        try:
            trackers.study_started(study_info(plan, opened, objective))
            outcome = None
            if opened.remaining:
                verb = "continuing" if opened.resumed else "starting"
                log.info("%s study %s: %d trial(s) to run, %d at a time",
                         verb, plan.study_name, opened.remaining, plan.parallel_jobs)  # fmt: skip
                outcome = run_trials(plan, opened, components)
            else:
                log.info(
                    "study %s already has %d finished trials; nothing to run",
                    plan.study_name,
                    plan.n_trials,
                )
            return finish(
                plan,
                opened.study,
                time.time() - started,
                echo=echo,
                trackers=trackers,
                outcome=outcome,
            )
        finally:
            trackers.close()


def study_info(plan: Plan, opened: Any, objective: Any) -> Any:
    """How trackers describe the study: names, budget, and the fixed settings worth logging."""
    from ugro_hpo.security.redaction import redact_data
    from ugro_hpo.tracking.base import StudyInfo

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
    """Read the study back, write its files (summary, best parameters, trials, report) and hand
    them to the trackers."""
    from ugro_hpo import exports
    from ugro_hpo.console import summary_table
    from ugro_hpo.security.redaction import redact_data, redact_url
    from ugro_hpo.storage import finished_count
    from ugro_hpo.study_files import summarize, write_study_files

    facts = {
        "status": _status(finished_count(study), plan.n_trials, outcome),
        "reason": getattr(outcome, "reason", None),
        "n_trials": plan.n_trials,
        "duration_s": round(duration_s, 3),
        "run_dir": str(plan.run_dir),
        "storage": redact_url(plan.storage),
        "ray_dir": str(plan.ray_dir),
        "search_space": plan.search_space.source,
        "sampler": plan.sampler_name,
        "scheduler": plan.scheduler["_target_"],
        "trackers": {name: spec["_target_"] for name, spec in plan.callbacks.items()},
    }
    space = plan.search_space
    result = summarize(study, space, facts)
    result = write_study_files(study, space, result, plan.run_dir, plan.report, plan.export_best)
    summary = result.summary
    if trackers:
        handed = [p for p in result.files if p.parent == plan.run_dir]
        if plan.report and (plan.run_dir / "report").is_dir():
            handed.append(plan.run_dir / "report")
        trackers.study_finished(summary, handed)
        summary["tracking"] = redact_data(trackers.status())
        exports.write_summary(plan.run_dir, summary)
    if echo:
        print(summary_table(summary, result.ordered[:5], space), flush=True)
        for line in trackers.messages if trackers else []:
            print(line, flush=True)
    return StudyResult(plan=plan, status=summary["status"], summary=summary, records=result.records)


def _status(finished: int, n_trials: int, outcome: Any) -> str:
    """complete, or why not: interrupted, stopped (failures), time_budget, incomplete."""
    if finished >= n_trials:
        return "complete"
    if outcome is not None and outcome.status != "complete":
        return str(outcome.status)
    return "incomplete"
