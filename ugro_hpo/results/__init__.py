"""What a study leaves behind, built from the Optuna storage alone: trial records, the summary,
the files (summary.json, best_params.yaml, trials.csv), importances, the report and the
end-of-study table."""

from ugro_hpo.lazy import lazy_exports

_EXPORTS = {
    "TrialRecord": "records",
    "trial_records": "records",
    "counts": "records",
    "ranked": "records",
    "pareto_front": "records",
    "best_entry": "records",
    "summarize": "summary",
    "write_study_files": "writers",
    "write_atomic": "writers",
    "importances": "importances",
    "write_report": "report",
    "summary_table": "console",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
