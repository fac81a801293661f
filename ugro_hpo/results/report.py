"""The study's report: parameter importances, PNG plots and one self-contained HTML page.

Everything is read from the Optuna study, so the same report comes out at the end of a run and
later from `ugro hpo analyze` (for a finished, running or interrupted study). The figures
(`plots`) are drawn from the same trial records as summary.json and trials.csv, with matplotlib
on the Agg backend (no display needed); a plot that does not apply (a Pareto front for one
objective, slices before two trials completed) is left out and the page says why.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from ugro_hpo.results.atomic_files import write_atomic, write_bytes_atomic
from ugro_hpo.results.importances import MIN_TRIALS
from ugro_hpo.results.report_page import ReportFiles, render_page
from ugro_hpo.space import SearchSpace

log = logging.getLogger(__name__)

REPORT_DIR = "report"
SLICE_PARAMETERS = 4  # slices for this many of the most important parameters
ROUGH_BELOW = 10
"""Importances from fewer complete trials than this are drawn with a caveat in the title:
fANOVA ranks a dominant parameter right at about 16 trials, not at four."""


def write_report(
    study: optuna.Study,
    space: SearchSpace,
    summary: dict[str, Any],
    directory: Path,
    top: list[Any] | None = None,
) -> ReportFiles:
    """Draw the plots into ``directory`` and write ``index.html`` showing them with the summary."""
    from ugro_hpo.results.records import trial_records

    load_plotting()
    directory.mkdir(parents=True, exist_ok=True)
    report = ReportFiles(directory)
    records = trial_records(study, space)
    curves = {t.number: dict(t.intermediate_values) for t in study.get_trials(deepcopy=False)}
    for name, draw in _plots(records, curves, space, summary.get("importances") or {}):
        try:
            reason = draw(directory / f"{name}.png")
        except Exception as exc:  # a plot must never cost the study its results
            reason = f"could not be drawn ({type(exc).__name__}: {exc})"
        if reason:
            report.skipped[name] = reason
        else:
            report.plots[name] = directory / f"{name}.png"
    page = directory / "index.html"
    write_atomic(page, render_page(summary, report, top or [], space))
    report.page = page
    return report


def load_plotting() -> None:
    """Import matplotlib (about 0.5 s), set to draw to files only. A failure is left for the
    drawing to meet."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # never looks for a display
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        import matplotlib.figure
    except Exception:
        return


Draw = Callable[[Path], "str | None"]


def _plots(
    records: list[Any],
    curves: dict[int, dict[int, float]],
    space: SearchSpace,
    scores: dict[str, dict[str, float]],
) -> list[tuple[str, Draw]]:
    """(name, draw) per plot; draw(path) saves a PNG, or returns why it does not apply."""
    from ugro_hpo.results import plots

    metric = space.metric_names[0]
    complete = [r for r in records if r.state == "complete"]
    ran = [r for r in records if r.state in ("complete", "pruned")]
    first = scores.get(metric, {})
    ranked = list(first) or list(space.names)

    def need(count: int, what: str = "complete") -> str | None:
        have = len(complete) if what == "complete" else len(ran)
        return None if have >= count else f"needs {count} {what} trial(s), has {have}"

    def history(path: Path) -> str | None:
        return need(1, "ran") or _save(plots.history(records, space), path)

    def parallel(path: Path) -> str | None:
        return need(MIN_TRIALS) or _save(plots.parallel_coordinates(records, space, ranked), path)

    def importance(path: Path) -> str | None:
        if not first:
            return f"needs {MIN_TRIALS} complete trials with different results"
        title = f"Parameter importance for {metric} (fANOVA over {len(complete)} complete trials)"
        caveat = (
            f"rough: fewer than {ROUGH_BELOW} complete trials"
            if len(complete) < ROUGH_BELOW
            else ""
        )
        return _save(plots.importance_bars(first, title, caveat), path)

    def slices(path: Path) -> str | None:
        shown = [n for n in ranked if any(n in r.params for r in complete)][:SLICE_PARAMETERS]
        return need(MIN_TRIALS) or _save(plots.slices(records, space, shown), path)

    def learning(path: Path) -> str | None:
        if not any(curves.get(r.number) for r in ran):
            return "no trial reported intermediate values"
        return _save(plots.learning_curves(records, curves, space), path)

    def pareto(path: Path) -> str | None:
        if not space.is_multi_objective:
            return "the study has one objective"
        return need(1) or _save(plots.pareto(records, space), path)

    return [("optimization_history", history), ("parameter_importances", importance),
            ("parallel_coordinates", parallel), ("slices", slices),
            ("learning_curves", learning), ("pareto_front", pareto)]  # fmt: skip


def _save(fig: Any, path: Path) -> str | None:
    """Save a Figure as PNG (None: drawn)."""
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=90, bbox_inches="tight", facecolor="white")
    write_bytes_atomic(path, image.getvalue())
    return None
