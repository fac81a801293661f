"""The study's report: parameter importances, PNG plots and one self-contained HTML page.

Everything is read from the Optuna study, so the same report comes out at the end of a run and
later from `ugro hpo analyze` (for a finished, running or interrupted study). Plots are drawn
with Optuna's matplotlib visualisations on the Agg backend (no display needed); a plot that
does not apply (a Pareto front for one objective, slices before any trial completed) is left
out and the page says why.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ugro_hpo.results.importances import MIN_TRIALS, objective_value
from ugro_hpo.results.writers import write_bytes_atomic
from ugro_hpo.space import SearchSpace

log = logging.getLogger(__name__)

REPORT_DIR = "report"
SLICE_PARAMETERS = 4  # slices for this many of the most important parameters
ROUGH_BELOW = 10
"""Importances from fewer complete trials than this are drawn with a caveat in the title:
fANOVA ranks a dominant parameter right at about 16 trials, not at four."""


@dataclass
class ReportFiles:
    """What was written: the plots (name -> PNG), why some are missing, and the page."""

    directory: Path
    plots: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    page: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [*self.plots.values(), *([self.page] if self.page else [])]


def write_report(
    study: optuna.Study,
    space: SearchSpace,
    summary: dict[str, Any],
    directory: Path,
    top: list[Any] | None = None,
) -> ReportFiles:
    """Draw the plots into ``directory`` and write ``index.html`` showing them with the summary."""
    import matplotlib

    from ugro_hpo.results.report_page import render_page

    matplotlib.use("Agg")  # files only, never a window
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    directory.mkdir(parents=True, exist_ok=True)
    report = ReportFiles(directory)
    for name, draw in _plots(study, space, summary.get("importances") or {}):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                reason = draw(directory / f"{name}.png")
        except Exception as exc:  # a plot must never cost the study its results
            reason = f"could not be drawn ({type(exc).__name__}: {exc})"
        if reason:
            report.skipped[name] = reason
        else:
            report.plots[name] = directory / f"{name}.png"
    from ugro_hpo.results.writers import write_atomic

    page = directory / "index.html"
    write_atomic(page, render_page(summary, report, top or [], space))
    report.page = page
    return report


def load_plotting() -> None:
    """Import the plotting modules (about 0.7 s), set to draw to files only: a study imports
    them ahead of need, while Ray starts. A failure is left for `write_report` to meet."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # before pyplot, so it never looks for a display
        import optuna.visualization.matplotlib  # noqa: F401  (imports pyplot)
    except Exception:
        return


Draw = Callable[[Path], "str | None"]


def _plots(
    study: optuna.Study, space: SearchSpace, scores: dict[str, dict[str, float]]
) -> list[tuple[str, Draw]]:
    """(name, draw) per plot; draw(path) saves a PNG, or returns why it does not apply."""
    import numpy as np
    from optuna.visualization import matplotlib as vis

    metric = space.metric_names[0]
    target = objective_value(0) if space.is_multi_objective else None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    first = next(iter(scores.values()), {})
    ranked = list(first) or list(space.names)
    intermediate = any(t.intermediate_values for t in study.get_trials(deepcopy=False))

    def need(count: int, what: str) -> str | None:
        return None if len(complete) >= count else f"needs {count} complete trial(s) {what}"

    def history(path: Path) -> str | None:
        return need(1, "") or _save(
            vis.plot_optimization_history(study, target=target, target_name=metric), path
        )

    def parallel(path: Path) -> str | None:
        if reason := need(MIN_TRIALS, ""):
            return reason
        ax = vis.plot_parallel_coordinate(study, params=ranked, target=target, target_name=metric)
        _readable_lines(ax)
        # room for every axis and the legend
        return _save(ax, path, size=(max(8.0, 1.6 * len(ranked) + 2), 6.0))

    def importance(path: Path) -> str | None:
        if not first:
            return f"needs {MIN_TRIALS} complete trials with different results"
        title = f"Parameter importance for {metric} (fANOVA, {len(complete)} complete trials)"
        if len(complete) < ROUGH_BELOW:
            title += f"\nrough: fewer than {ROUGH_BELOW} complete trials"
        return _save(_bar_chart(first, title), path)

    def slices(path: Path) -> str | None:
        shown = [n for n in ranked if any(n in t.params for t in complete)][:SLICE_PARAMETERS]
        if reason := need(MIN_TRIALS, ""):
            return reason
        axes = vis.plot_slice(study, params=shown, target=target, target_name=metric)
        for ax in np.atleast_1d(axes).flat:  # type: ignore[arg-type]  # labels overlap flat
            ax.tick_params(axis="x", labelrotation=35, labelsize=8)
        return _save(axes, path, size=(max(8.0, 3.2 * len(shown)), 4.5))

    def curves(path: Path) -> str | None:
        if not intermediate:
            return "no trial reported intermediate values"
        ax = vis.plot_intermediate_values(study)
        ax.set_ylabel(metric)  # Optuna's label says "Intermediate Value"
        ax.set_xlabel("step")
        return _save(ax, path)

    def pareto(path: Path) -> str | None:
        if not space.is_multi_objective:
            return "the study has one objective"
        if len(space.metric_names) > 3:
            return "a Pareto front is drawn for 2 or 3 objectives"
        return need(1, "") or _save(
            vis.plot_pareto_front(study, target_names=space.metric_names), path
        )

    return [("optimization_history", history), ("parameter_importances", importance),
            ("parallel_coordinates", parallel), ("slices", slices),
            ("learning_curves", curves), ("pareto_front", pareto)]  # fmt: skip


def _readable_lines(ax: Any) -> None:
    """Optuna draws parallel coordinates on a grey grid with the worst trial in white: here on
    a white background, without the grid, in a colour map whose every end shows."""
    for axes in ax.figure.axes:
        axes.set_facecolor("white")
        axes.grid(False)
        axes.tick_params(labelsize=8)
    for lines in ax.collections:
        # Optuna picks Blues or Blues_r so that the best trial is darkest; keep that sense.
        reversed_ = lines.get_cmap().name.endswith("_r")
        lines.set_cmap("viridis" if reversed_ else "viridis_r")
        if getattr(lines, "colorbar", None) is not None:
            lines.colorbar.update_normal(lines)


def _bar_chart(scores: dict[str, float], title: str) -> Any:
    import matplotlib.pyplot as plt

    names = list(scores)[::-1]
    _, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    ax.barh(names, [scores[n] for n in names], color="#4c72b0")
    ax.set_title(title)
    ax.set_xlabel("importance")
    return ax


def _save(axes: Any, path: Path, size: tuple[float, float] | None = None) -> str | None:
    """Save the figure behind ``axes`` (one Axes or an array of them) and free it; None: drawn."""
    import matplotlib.pyplot as plt
    import numpy as np

    figure = np.atleast_1d(axes).flat[0].figure
    width, height = figure.get_size_inches()
    figure.set_size_inches(*(size or (max(width, 8), height)))
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(path, image.getvalue())
    return None
