"""The jobs of a multirun side by side: one row per job's study (its best value, counts and
duration), printed at the end of ``-m`` and written to the sweep directory as
``comparison.csv`` and ``comparison.html``."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

COLUMNS = ("job", "study", "status", "objective", "best", "complete", "pruned", "failed",
           "duration_s")  # fmt: skip


def job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory that holds a summary.json, in job order."""
    rows = []
    for path in sweep_dir.glob("*/summary.json"):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        objectives = summary.get("objectives") or [{}]
        name = objectives[0].get("name", "")
        best = (summary.get("best") or {}).get("metrics", {}).get(name)
        counts = summary.get("counts") or {}
        rows.append({
            "job": path.parent.name,
            "study": summary.get("study_name", ""),
            "status": summary.get("status", ""),
            "objective": f"{name} ({objectives[0].get('direction', '')})" if name else "",
            "best": "" if best is None else f"{best:.6g}",
            "complete": counts.get("complete", 0),
            "pruned": counts.get("pruned", 0),
            "failed": counts.get("failed", 0),
            "duration_s": summary.get("duration_s", ""),
        })  # fmt: skip
    return sorted(rows, key=_job_order)


def _job_order(row: dict[str, Any]) -> tuple[int, str]:
    """Hydra numbers its job directories: 0, 1, ..., 10 (not 0, 1, 10, 2)."""
    job = str(row["job"])
    return (int(job), "") if job.isdigit() else (10**9, job)


def write_comparison(sweep_dir: Path) -> str:
    """Write comparison.csv and comparison.html; return the table as text (empty: no jobs)."""
    from ugro_hpo.results.writers import write_atomic

    rows = job_rows(sweep_dir)
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(sweep_dir / "comparison.csv", buffer.getvalue())
    write_atomic(sweep_dir / "comparison.html", _page(rows))
    return _text(rows)


def _text(rows: list[dict[str, Any]]) -> str:
    cells = [list(COLUMNS)] + [[str(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "Jobs of this multirun:\n" + "\n".join(lines)


def _page(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in COLUMNS) + "</tr>"
        for r in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Multirun comparison</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 10px;text-align:left}"
        "tr:nth-child(even){background:#f3f3f3}</style></head><body>"
        f"<h1>Multirun comparison</h1><table><tr>{head}</tr>{body}</table>"
        "<p>Each job's own report is in its directory (report/index.html).</p></body></html>\n"
    )
