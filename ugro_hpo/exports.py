"""The files a run leaves in its directory: summary.json, best_params.yaml, trials.csv.

Each file is written to a temporary name and renamed, so a reader (or a crash) never sees half
a file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ugro_hpo.results import TrialRecord
from ugro_hpo.search_space import SearchSpace
from ugro_hpo.security.redaction import REDACTED, is_secret_name, redact_text

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory, secrets scrubbed."""
    write_bytes_atomic(path, redact_text(text).encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file beside ``path`` and rename it over ``path``.

    The temporary file is created exclusively under a random name, so a link planted where it
    would be is never followed, and the rename replaces a link at ``path`` itself rather than
    writing through it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)  # as a plain open() would have made it
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    # Metric names and the study name may come from a shared database: a comment keeps only
    # printable characters, so a newline in a name cannot start a key of its own.
    header = _comment(f"best trial {best['trial']} of study {summary['study_name']}: {metrics}")
    return header + yaml.safe_dump(best["params"], sort_keys=False)


def _comment(text: str) -> str:
    printable = "".join(c if c.isprintable() else " " for c in text)
    return f"# {printable[:1000]}\n"


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
