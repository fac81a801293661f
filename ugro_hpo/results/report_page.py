"""The report's HTML page: one file, plots embedded, no scripts, readable offline or attached
to a tracking run."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ugro_hpo.space import SearchSpace

TITLES = {
    "optimization_history": "Optimisation history",
    "parameter_importances": "Parameter importances",
    "parallel_coordinates": "Parallel coordinates",
    "slices": "Slices of the most important parameters",
    "learning_curves": "Learning curves (intermediate values; short lines were stopped early)",
    "pareto_front": "Pareto front",
}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; } img { max-width: 100%; border: 1px solid #eee; }
.note { color: #666; font-size: 0.9em; }
"""


@dataclass
class ReportFiles:
    """What was written: the plots (name -> PNG), why some are missing, and the page."""

    directory: Path
    plots: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    page: Path | None = None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def _table(headers: list[str] | None, rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers or [])
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _fidelity(summary: dict[str, Any]) -> list[str]:
    """The budget line and the rung view (see `results.rung_view`)."""
    trained, fifo = summary.get("steps_trained"), summary.get("steps_fifo")
    if not isinstance(trained, int) or not isinstance(fifo, int) or not fifo:
        return []
    parts = [
        "<h2>Multi-fidelity</h2>",
        f"<p>Steps trained: {trained} of the {fifo} that running every trial to max_steps "
        f"would have cost ({trained / fifo:.0%}).</p>",
    ]
    rungs = summary.get("rungs") or []
    if rungs:
        rows = [[r["step"], r["reached"], r["stopped"], r["promoted"]] for r in rungs]
        parts.append(_table(["rung (step)", "trials reached", "stopped there", "went on"], rows))
    return parts


def render_page(
    summary: dict[str, Any], report: ReportFiles, top: list[Any], space: SearchSpace
) -> str:
    """The page's HTML text."""
    counts = summary.get("counts", {})
    facts: list[list[Any]] = [
        ["status", summary.get("status")],
        ["finished", f"{summary.get('finished')} of {summary.get('n_trials')}"],
        *[[state, count] for state, count in counts.items() if count],
        ["sampler", summary.get("sampler")],
        ["scheduler", summary.get("scheduler")],
        ["search space", summary.get("search_space")],
        ["storage", summary.get("storage")],
    ]
    parts = [
        f"<h1>Study {html.escape(str(summary.get('study_name')))}</h1>",
        _table(None, facts),
    ]
    if top:
        names = space.metric_names + space.names
        rows = [[r.number, *(r.values.get(m) for m in space.metric_names),
                 *(r.params.get(n) for n in space.names)] for r in top]  # fmt: skip
        parts += ["<h2>Best trials</h2>", _table(["trial", *names], rows)]
    else:
        parts.append("<p>No trial has completed yet.</p>")
    parts += _fidelity(summary)
    for metric, scores in (summary.get("importances") or {}).items():
        parts += [
            f"<h2>Parameter importances for {html.escape(metric)}</h2>",
            _table(["parameter", "importance"], [[k, v] for k, v in scores.items()]),
        ]
    for name, title in TITLES.items():
        if name in report.plots:
            data = base64.b64encode(report.plots[name].read_bytes()).decode("ascii")
            parts += [f"<h2>{html.escape(title)}</h2>",
                      f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">']  # fmt: skip
        elif name in report.skipped:
            parts.append(
                f'<p class="note">{html.escape(title)}: not drawn, {html.escape(report.skipped[name])}.</p>'
            )
    title = f"ugro_hpo report: {html.escape(str(summary.get('study_name')))}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
