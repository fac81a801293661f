"""What a person reads at the end of a study: a compact table of the best trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ugro_hpo.results.records import TrialRecord
from ugro_hpo.results.text_table import text_table
from ugro_hpo.space import SearchSpace


def _format(value: Any) -> str:
    """A value for the terminal; text from a shared study cannot move the cursor or recolour it."""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def summary_table(summary: dict[str, Any], top: list[TrialRecord], space: SearchSpace) -> str:
    """The end-of-study text: counts, the top trials with parameters and metrics, file locations."""
    counts = summary["counts"]
    took = f" in {summary['duration_s']:.1f} s" if summary.get("duration_s") is not None else ""
    lines = [
        f"Study {summary['study_name']}: {summary['status']}, {summary['finished']}/{summary['n_trials']} trials finished "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['infeasible']} infeasible, "
        f"{counts['failed']} failed){took}",
    ]
    if top:
        headers = ["trial", *space.metric_names, *space.names]
        rows = [[str(r.number), *(_format(r.values.get(m)) for m in space.metric_names),
                 *(_format(r.params.get(n)) for n in space.names)] for r in top]  # fmt: skip
        lines += text_table(headers, rows)
    else:
        lines.append("No trial completed.")
    lines.append(f"Run directory: {summary['run_dir']}")
    report = Path(summary["run_dir"]) / "report" / "index.html"
    if report.is_file():
        lines.append(f"Report: {report}")
    lines.append(f"Study storage: {summary['storage']} (study {summary['study_name']})")
    return "\n".join(lines)
