"""The files a study leaves in its run directory: best_params.yaml, trials.csv, report/ and,
last, summary.json (once, with everything in it).

Each file is written to a temporary name and renamed, so a reader (or a crash) never sees half
a file, and a link planted where a file goes is replaced, never written through; what stands
where a file goes must be a regular file or nothing (`security.paths.check_output_file`).
trials.csv holds text from the study database, which others write: it is written without
control characters, and a cell a spreadsheet would take for a formula is made plain text.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ugro_hpo.results.atomic_files import write_atomic
from ugro_hpo.results.records import TrialRecord
from ugro_hpo.security.redaction import REDACTED, is_secret_name, redact_data
from ugro_hpo.space import SearchSpace

if TYPE_CHECKING:
    import optuna

    from ugro_hpo.results.summary import Summary

log = logging.getLogger(__name__)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON, secret-named entries masked as strings first, so that the text
    scrub after it has nothing left to mask and the file stays valid JSON."""
    write_atomic(path, json.dumps(redact_data(data), indent=2, default=str) + "\n")


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = run_dir / "summary.json"
    write_json(path, summary)
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
        "resumed_from_step",
        "violation",
        "error",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([spreadsheet_safe(f) for f in fields])
    writer.writerows([spreadsheet_safe(row.get(f, "")) for f in fields] for row in rows)
    path = run_dir / "trials.csv"
    write_atomic(path, buffer.getvalue())
    return path


# Control characters (C0, DEL, C1) and the invisible marks that reorder text on screen.
_UNSAFE_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that shows as text and runs nothing: control characters become spaces, and
    text a spreadsheet would take for a formula (``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return first) gets a leading ``'``. Numbers, and text that is just a number, stay as they
    are."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        value = "'" + value
    return _UNSAFE_CHARACTERS.sub(" ", value)


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

        report_dir = run_dir / REPORT_DIR
        if report_dir.is_symlink():  # planted: replaced by a directory, never written through
            report_dir.unlink()
        try:
            written = write_report(study, space, summary.data, report_dir, summary.ordered[:10])
            files.append(written.directory)
        except Exception as exc:  # the results above are what matters; a report can be rebuilt
            log.warning("the report could not be written (%s); `ugro hpo analyze` can retry", exc)
    return files
