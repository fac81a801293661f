"""The files a study leaves in its run directory, built from the Optuna storage alone:
summary.json, best_params.yaml, trials.csv and report/.

The end of a run and `ugro hpo analyze` both come here, so a study analysed later (still
running, interrupted, or made by another machine) gets the same files as one that just ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ugro_hpo.results import TrialRecord
from ugro_hpo.search_space import SearchSpace

log = logging.getLogger(__name__)


@dataclass
class StudyFiles:
    """What was written, and the records it was written from."""

    summary: dict[str, Any]
    records: list[TrialRecord]
    ordered: list[TrialRecord]  # complete trials, best first
    files: list[Path]


def summarize(study: optuna.Study, space: SearchSpace, facts: dict[str, Any]) -> StudyFiles:
    """The summary of ``study``: counts, best trial (or Pareto front), importances, and ``facts``
    (status, n_trials, where things are) supplied by the caller."""
    from ugro_hpo.report import importances
    from ugro_hpo.results import best_entry, counts, pareto_front, ranked, trial_records
    from ugro_hpo.security.redaction import redact_data
    from ugro_hpo.storage import finished_count

    facts = dict(facts)
    records = trial_records(study, space)
    ordered = ranked(records, space)
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "status": facts.pop("status"),
        "reason": facts.pop("reason", None),
        "n_trials": facts.pop("n_trials"),
        "finished": finished_count(study),
        "counts": counts(records),
        "objectives": [{"name": o.name, "direction": o.direction} for o in space.objectives],
        "best": best_entry(ordered[0]) if ordered else None,
        **facts,
    }
    if space.is_multi_objective:
        complete = [r for r in records if r.state == "complete"]
        summary["pareto_front"] = [best_entry(r) for r in pareto_front(complete, space)]
    summary["importances"] = importances(study, space)
    return StudyFiles(redact_data(summary), records, ordered, [])


def write_study_files(
    study: optuna.Study,
    space: SearchSpace,
    result: StudyFiles,
    run_dir: Path,
    report: bool = True,
    export_best: Path | None = None,
) -> StudyFiles:
    """Write the files into ``run_dir`` (the report under ``run_dir/report``)."""
    from ugro_hpo import exports

    summary = result.summary
    files = [
        exports.write_summary(run_dir, summary),
        exports.write_best_params(run_dir / "best_params.yaml", summary),
        exports.write_trials_csv(run_dir, result.records, space),
    ]
    if export_best is not None:
        exports.write_best_params(export_best, summary)
    if report:
        from ugro_hpo.report import REPORT_DIR, write_report

        try:
            written = write_report(study, space, summary, run_dir / REPORT_DIR, result.ordered[:10])
            files += written.files
        except Exception as exc:  # the results above are what matters; a report can be rebuilt
            log.warning("the report could not be written (%s); `ugro hpo analyze` can retry", exc)
    result.files = files
    return result
