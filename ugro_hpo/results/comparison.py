"""The jobs of a multirun side by side: one row per job's study (its best value, counts and
duration), printed at the end of ``-m`` and written to the sweep directory as
``comparison.csv`` and ``comparison.html`` (with each job's best-so-far curve overlaid and a
link to its report).

A comparison can compare nothing: jobs that differ only in the sampler, each shorter than the
random start-up of a sampler that models, all ran random proposals. It says so.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from ugro_hpo.results.text_table import text_table

COLUMNS = ("job", "study", "status", "objective", "best", "complete", "pruned", "infeasible",
           "failed", "duration_s")  # fmt: skip
SAMPLER_KEYS = ("search",)
"""The config keys that choose the sampler (``-m search=tpe,random``)."""


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
            **{state: counts.get(state, 0) for state in ("complete", "pruned", "infeasible", "failed")},
            "duration_s": summary.get("duration_s", ""),
            "_summary": summary,
            "_report": (path.parent / "report" / "index.html").is_file(),
        })  # fmt: skip
    return sorted(rows, key=_job_order)


def _job_order(row: dict[str, Any]) -> tuple[int, str]:
    """Hydra numbers its job directories: 0, 1, ..., 10 (not 0, 1, 10, 2)."""
    job = str(row["job"])
    return (int(job), "") if job.isdigit() else (10**9, job)


def caveat(rows: list[dict[str, Any]], varying: set[str]) -> str:
    """Why these jobs' results cannot tell their samplers apart yet, or ''."""
    if not rows or not varying or not all(k.split(".")[0] in SAMPLER_KEYS for k in varying):
        return ""
    startups = [
        int(s) for r in rows if str(s := r["_summary"].get("sampler_startup_trials")).isdigit()
    ]
    if not startups:
        return ""
    ran = max(int(r["_summary"].get("finished") or 0) for r in rows)
    if ran > min(startups):
        return ""
    return (
        f"These jobs differ only in the sampler, and each ran at most {ran} trials, within the "
        f"{min(startups)} random start-up trials a modelling sampler proposes first: every job "
        "searched at random, so the comparison cannot tell the samplers apart. Raise n_trials "
        f"well above {min(startups)}."
    )


def write_comparison(sweep_dir: Path, varying: set[str] | None = None) -> str:
    """Write comparison.csv and comparison.html; return the table as text (empty: no jobs)."""
    from ugro_hpo.results.writers import spreadsheet_safe, write_atomic

    rows = job_rows(sweep_dir)
    if not rows:
        return ""
    note = caveat(rows, varying or set())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    # study names and statuses come from the jobs' files: no cell may read as a formula
    writer.writerows([spreadsheet_safe(r[c]) for c in COLUMNS] for r in rows)
    write_atomic(sweep_dir / "comparison.csv", buffer.getvalue())
    write_atomic(sweep_dir / "comparison.html", _page(rows, _curves_png(sweep_dir, rows), note))
    return _text(rows) + (f"\nNote: {note}" if note else "")


def best_so_far(run_dir: Path, metric: str, minimize: bool) -> list[tuple[int, float]]:
    """(trial number, best value so far) at each complete trial, from the job's trials.csv."""
    points: list[tuple[int, float]] = []
    try:
        with (run_dir / "trials.csv").open(encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                if row.get("state") != "complete":
                    continue
                try:
                    number, value = int(row["number"]), float(row[metric])
                except (KeyError, TypeError, ValueError):
                    continue
                if points:
                    value = min(value, points[-1][1]) if minimize else max(value, points[-1][1])
                points.append((number, value))
    except OSError:
        return []
    return points


def _curves_png(sweep_dir: Path, rows: list[dict[str, Any]]) -> bytes | None:
    """The jobs' best-so-far curves on one axis (their first objective), or None."""
    objectives = rows[0]["_summary"].get("objectives") or [{}]
    metric, direction = objectives[0].get("name"), objectives[0].get("direction", "minimize")
    if not metric:
        return None
    from ugro_hpo.results.plots import figure

    fig = figure(8.0, 4.2)
    ax = fig.subplots()
    drawn = 0
    for row in rows:
        points = best_so_far(sweep_dir / row["job"], metric, direction == "minimize")
        if points:
            xs, ys = zip(*points, strict=True)
            ax.step(xs, ys, where="post", lw=1.8, label=f"job {row['job']}: {row['study']}")
            drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("trial")
    ax.set_ylabel(f"best {metric} so far")
    ax.set_title(f"Best {metric} so far, by job ({direction})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=90, bbox_inches="tight", facecolor="white")
    return image.getvalue()


def _text(rows: list[dict[str, Any]]) -> str:
    lines = text_table(COLUMNS, [[str(r[c]) for c in COLUMNS] for r in rows])
    return "Jobs of this multirun:\n" + "\n".join(lines)


def _page(rows: list[dict[str, Any]], curves: bytes | None, note: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (*COLUMNS, "report"))
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in COLUMNS)
        + (_report_link(r["job"]) if r["_report"] else "<td></td>")
        + "</tr>"
        for r in rows
    )
    image = (
        f'<h2>Best so far</h2><img alt="best so far, by job" '
        f'src="data:image/png;base64,{base64.b64encode(curves).decode("ascii")}">'
        if curves
        else ""
    )
    warning = f'<p class="note"><strong>Note:</strong> {html.escape(note)}</p>' if note else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Multirun comparison</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:4px 10px;"
        "text-align:left}tr:nth-child(even){background:#f3f3f3}img{max-width:100%}"
        ".note{background:#fff6e0;padding:0.6em;border-left:4px solid #e08a2c}</style></head><body>"
        f"<h1>Multirun comparison</h1>{warning}<table><tr>{head}</tr>{body}</table>{image}"
        "</body></html>\n"
    )


def _report_link(job: str) -> str:
    """A link to the job's report page, relative to the sweep directory (job names are Hydra's
    numbers or our checked names, escaped all the same)."""
    href = html.escape(f"{job}/report/index.html", quote=True)
    return f'<td><a href="{href}">report</a></td>'
