"""What a study leaves behind, built from the Optuna storage alone: trial records, the summary,
the files (summary.json, best_params.yaml, trials.csv), importances, the report and the
end-of-study table."""

from ugro_hpo.results.atomic_files import write_atomic
from ugro_hpo.results.console import summary_table
from ugro_hpo.results.importances import importances
from ugro_hpo.results.records import (
    TrialRecord,
    best_entry,
    counts,
    pareto_front,
    ranked,
    trial_records,
)
from ugro_hpo.results.report import write_report
from ugro_hpo.results.summary import summarize
from ugro_hpo.results.writers import write_study_files

__all__ = [
    "TrialRecord",
    "best_entry",
    "counts",
    "importances",
    "pareto_front",
    "ranked",
    "summarize",
    "summary_table",
    "trial_records",
    "write_atomic",
    "write_report",
    "write_study_files",
]
