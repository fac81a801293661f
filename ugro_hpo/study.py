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

    from ugro_hpo.components import instantiate
    from ugro_hpo.launcher import build_components, run_trials
    from ugro_hpo.snapshot import log_file, write_config_snapshot
    from ugro_hpo.storage import open_study

    components = build_components(plan)
    instantiate(plan.objective, "objective").prepare(plan.resources)
    opened = open_study(plan)
    write_config_snapshot(plan)
    with log_file(plan):
        if opened.remaining:
            verb = "continuing" if opened.resumed else "starting"
            log.info("%s study %s: %d trial(s) to run, %d at a time",
                     verb, plan.study_name, opened.remaining, plan.parallel_jobs)  # fmt: skip
            run_trials(plan, opened, components)
        else:
            log.info(
                "study %s already has %d finished trials; nothing to run",
                plan.study_name,
                plan.n_trials,
            )
        return finish(plan, opened.study, duration_s=time.time() - started, echo=echo)


def finish(plan: Plan, study: Any, duration_s: float, echo: bool = True) -> StudyResult:
    """Read the study back and write summary.json, best_params.yaml and trials.csv."""
    from ugro_hpo import exports
    from ugro_hpo.console import summary_table
    from ugro_hpo.redact import redact_url
    from ugro_hpo.results import best_entry, counts, pareto_front, ranked, trial_records
    from ugro_hpo.storage import finished_count

    space = plan.search_space
    records = trial_records(study, space)
    ordered = ranked(records, space)
    finished = finished_count(study)
    summary: dict[str, Any] = {
        "study_name": plan.study_name,
        "status": "complete" if finished >= plan.n_trials else "incomplete",
        "n_trials": plan.n_trials,
        "finished": finished,
        "counts": counts(records),
        "objectives": [{"name": o.name, "direction": o.direction} for o in space.objectives],
        "best": best_entry(ordered[0]) if ordered else None,
        "duration_s": round(duration_s, 3),
        "run_dir": str(plan.run_dir),
        "storage": redact_url(plan.storage),
        "ray_dir": str(plan.ray_dir),
        "search_space": space.source,
        "sampler": plan.sampler["_target_"],
        "scheduler": plan.scheduler["_target_"],
        "trackers": [c["_target_"] for c in plan.callbacks],
    }
    if space.is_multi_objective:
        complete = [r for r in records if r.state == "complete"]
        summary["pareto_front"] = [best_entry(r) for r in pareto_front(complete, space)]
    exports.write_summary(plan.run_dir, summary)
    exports.write_best_params(plan.run_dir / "best_params.yaml", summary)
    exports.write_trials_csv(plan.run_dir, records, space)
    if plan.export_best is not None:
        exports.write_best_params(plan.export_best, summary)
    if echo:
        print(summary_table(summary, ordered[:5], space), flush=True)
    return StudyResult(plan=plan, status=summary["status"], summary=summary, records=records)
