"""The report's figures, read back from the matplotlib objects: what is drawn where, which
scale, which labels (a PNG says little to a test; these are what a person sees in it)."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest
import yaml

from ugro_hpo.results import plots
from ugro_hpo.results.records import TrialRecord
from ugro_hpo.space import parse_search_space

SPACE = parse_search_space(
    yaml.safe_load("""
parameters:
  lora_r: {type: int, min: 4, max: 64, step: 4}
  lora_alpha: {type: float, min: 8.0, max: 128.0, log: true}
  learning_rate: {type: float, min: 1.0e-5, max: 1.0e-3, log: true}
  batch_size: {type: categorical, choices: [8, 16, 32, 64]}
constraints: ["lora_alpha >= lora_r"]
objectives: [{name: eval_loss}]
"""),
    "test",
)
NAMES = ["learning_rate", "lora_r", "lora_alpha", "batch_size"]


def _record(number: int, state: str, loss: float | None, **params: Any) -> TrialRecord:
    base = {"lora_r": 16, "lora_alpha": 32.0, "learning_rate": 3e-4, "batch_size": 16}
    return TrialRecord(number, state, {**base, **params}, {"eval_loss": loss})


RECORDS = [
    _record(0, "complete", 5.41, learning_rate=1e-4),
    _record(1, "infeasible", None, lora_r=64, lora_alpha=9.0),
    _record(2, "pruned", 5.82, learning_rate=2e-5),
    _record(3, "complete", 5.335, learning_rate=6e-4, lora_alpha=120.0, batch_size=64),
    _record(4, "failed", None),
    _record(5, "complete", 5.37, learning_rate=3.1e-4, lora_r=44),
]


def _texts(fig: Any) -> list[Any]:
    return [t for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text().strip()]


def _overlapping(texts: list[Any], fig: Any) -> list[tuple[str, str]]:
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible()]
    return [(a, b) for (a, x), (b, y) in combinations(boxes, 2) if x.overlaps(y)]


def test_history_draws_each_ending_as_what_it_was_and_never_ran_trials_at_no_value() -> None:
    fig = plots.history(RECORDS, SPACE)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["complete (3)", "best so far", "pruned (1): value when stopped",
                      "infeasible: never ran (1)", "failed (1)"]  # fmt: skip
    by_label = {c.get_label(): c for c in ax.collections}
    never_ran = by_label["infeasible: never ran (1)"]
    # on a strip in axes coordinates at the bottom, not at any value of eval_loss
    assert never_ran.get_transform() != ax.transData
    assert [tuple(p) for p in never_ran.get_offsets()] == [(1.0, 0.03)]
    (best,) = [line for line in ax.get_lines() if line.get_label() == "best so far"]
    assert list(best.get_ydata()) == [5.41, 5.335, 5.335, 5.335]
    low, high = ax.get_ylim()
    assert low > 5.0 and high < 6.0  # the axis spans the values that exist, no zeros


def test_parallel_coordinates_colour_only_complete_trials_and_keep_labels_apart() -> None:
    fig = plots.parallel_coordinates(RECORDS, SPACE, NAMES)
    ax = fig.axes[0]
    (bar,) = [a for a in fig.axes if a is not ax]
    assert bar.get_ylabel() == "eval_loss (complete trials)"
    # the colour scale spans the complete trials only: no pruned, no never-ran values
    assert bar.get_ylim() == pytest.approx((5.335, 5.41))
    fig.canvas.draw()
    assert _overlapping([t for t in ax.texts], fig) == []
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "eval loss",
        *(n.replace("_", " ") for n in NAMES),
    ]
    learning_rate = [t.get_text() for t in ax.texts if abs(t.get_position()[0] - 1.03) < 1e-9]
    assert len(set(learning_rate)) == len(learning_rate) == 4


def test_slices_have_readable_ticks_on_log_and_categorical_axes() -> None:
    fig = plots.slices(RECORDS, SPACE, NAMES)
    fig.canvas.draw()
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(labels) >= 2, ax.get_xlabel()
        assert _overlapping(labels, fig) == [], ax.get_xlabel()
    assert fig.axes[0].get_ylabel() == "eval_loss"


def test_learning_curves_name_the_metric_and_mark_where_trials_were_stopped() -> None:
    curves = {0: {1: 5.9, 2: 5.41}, 2: {1: 5.82}, 3: {1: 5.8, 2: 5.335}, 5: {1: 5.7, 2: 5.37}}
    fig = plots.learning_curves(RECORDS, curves, SPACE)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "eval_loss" and ax.get_xlabel() == "step"
    assert set(ax.get_legend_handles_labels()[1]) == {"best: trial 3", "pruned: stopped here"}
    colours = {tuple(line.get_color()) for line in ax.get_lines() if line.get_color() != "#b5b5b5"}
    assert len(colours) == 3  # one colour per complete trial, by its final value


def test_pareto_front_is_called_that() -> None:
    space = parse_search_space(
        yaml.safe_load("parameters: {x: {type: float, min: 0, max: 1}}\n"
                       "objectives: [{name: f1}, {name: f2}]\n"), "test")  # fmt: skip
    records = [TrialRecord(i, "complete", {"x": i / 4}, {"f1": f1, "f2": f2})
               for i, (f1, f2) in enumerate([(1, 4), (2, 2), (3, 3), (4, 1)])]  # fmt: skip
    ax = plots.pareto(records, space).axes[0]
    assert ax.get_legend_handles_labels()[1] == ["other trials (1)", "Pareto front (3)"]


@pytest.mark.parametrize(("complete", "caveat"), [(3, True), (12, False)])
def test_importance_title_counts_the_trials_it_was_computed_from(
    complete: int, caveat: bool
) -> None:
    from ugro_hpo.results.report import ROUGH_BELOW

    title = f"Parameter importance for eval_loss (fANOVA over {complete} complete trials)"
    fig = plots.importance_bars({"learning_rate": 0.7, "lora_r": 0.3}, title,
                                "rough" if complete < ROUGH_BELOW else "")  # fmt: skip
    assert fig.axes[0].get_title().startswith(title)
    assert ("rough" in fig.axes[0].get_title()) is caveat
