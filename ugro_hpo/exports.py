"""The files a run leaves in its directory: summary.json, best_params.yaml, trials.csv.

Each file is written to a temporary name and renamed, so a reader (or a crash) never sees half
a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import yaml

from ugro_hpo.redact import REDACTED, is_secret_name, redact_text
from ugro_hpo.results import TrialRecord
from ugro_hpo.search_space import SearchSpace


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory, secrets scrubbed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(redact_text(text), encoding="utf-8")
    os.replace(tmp, path)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = run_dir / "summary.json"
    write_atomic(path, json.dumps(summary, indent=2, default=str) + "\n")
    return path


def best_params_text(summary: dict[str, Any]) -> str:
    """The best trial's parameters as YAML, with a comment saying where they came from."""
    best = summary.get("best")
    if not best:
        return "# no trial of this study has completed yet\n{}\n"
    metrics = ", ".join(
        f"{k}={v:.6g}" for k, v in best["metrics"].items() if isinstance(v, (int, float))
    )
    header = f"# best trial {best['trial']} of study {summary['study_name']}: {metrics}\n"
    return header + yaml.safe_dump(best["params"], sort_keys=False)


def write_best_params(path: Path, summary: dict[str, Any]) -> Path:
    write_atomic(path, best_params_text(summary))
    return path


def write_trials_csv(run_dir: Path, records: list[TrialRecord], space: SearchSpace) -> Path:
    """One row per trial: number, state, parameters, final metrics, duration, violation, error."""
    metric_names = list(space.metric_names)
    for record in records:
        metric_names += [m for m in record.metrics if m not in metric_names]
    rows = [r.row(space.names, metric_names) for r in records]
    for row in rows:
        for column in row:
            if is_secret_name(column) and row[column] != "":
                row[column] = REDACTED
    fields = [
        "number",
        "state",
        *space.names,
        *metric_names,
        "duration_s",
        "last_step",
        "violation",
        "error",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = run_dir / "trials.csv"
    write_atomic(path, buffer.getvalue())
    return path
