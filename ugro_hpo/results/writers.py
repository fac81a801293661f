"""The files a study leaves in its run directory: best_params.yaml, trials.csv, report/ and,
last, summary.json (once, with everything in it).

Each file is written to a temporary name and renamed, so a reader (or a crash) never sees half
a file, and a link planted where a file goes is replaced, never written through.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ugro_hpo.results.records import TrialRecord
from ugro_hpo.security.redaction import REDACTED, is_secret_name, redact_text
from ugro_hpo.space import SearchSpace

if TYPE_CHECKING:
    import optuna

    from ugro_hpo.results.summary import Summary

log = logging.getLogger(__name__)

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


def write_study_files(
    study: optuna.Study,
    space: SearchSpace,
    summary: Summary,
    run_dir: Path,
    report: bool = True,
    export_best: Path | None = None,
) -> list[Path]:
    """best_params.yaml, trials.csv and (unless ``report`` is false) report/ in ``run_dir``;
    summary.json is left to `write_summary`, once everything that goes into it is known."""
    files = [
        write_best_params(run_dir / "best_params.yaml", summary.data),
        write_trials_csv(run_dir, summary.records, space),
    ]
    if export_best is not None:
        write_best_params(export_best, summary.data)
    if report:
        from ugro_hpo.results.report import REPORT_DIR, write_report

        try:
            written = write_report(
                study, space, summary.data, run_dir / REPORT_DIR, summary.ordered[:10]
            )
            files.append(written.directory)
        except Exception as exc:  # the results above are what matters; a report can be rebuilt
            log.warning("the report could not be written (%s); `ugro hpo analyze` can retry", exc)
    summary.files = files
    return files
