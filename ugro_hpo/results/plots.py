"""The report's figures, drawn from the trial records so they agree with summary.json and
trials.csv: a trial that never ran (infeasible) is never drawn at a value, a pruned trial is
drawn as what it is (its value when it was stopped), and every colour scale spans the values of
trials that ran to the end.

Each function returns a matplotlib Figure (or a reason it does not apply); `report` saves them.
Figures are sized for a slide: every label inside, tick labels that do not overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ugro_hpo.results.records import TrialRecord, pareto_front
from ugro_hpo.space import SearchSpace

COMPLETE = "#1f5fa8"
PRUNED = "#e08a2c"
NEVER_RAN = "#8c8c8c"
FAILED = "#c0392b"
BEST = "#2a9d5c"
BEST_DARKEST = {True: "viridis", False: "viridis_r"}  # by "lower is better": the best darkest
MAX_AXES = 8  # parallel coordinates: the objective and the most important parameters


def figure(width: float, height: float) -> Any:
    """A new Figure on a white background, drawn by Agg (files only); no pyplot state is kept,
    so nothing leaks from one figure to the next."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _goal(space: SearchSpace, index: int) -> tuple[str, bool]:
    objective = space.objectives[index]
    return objective.name, objective.direction == "minimize"


def _value(record: TrialRecord, metric: str) -> float | None:
    value = record.values.get(metric)
    return None if value is None or not math.isfinite(value) else float(value)


def history(records: Sequence[TrialRecord], space: SearchSpace) -> Any:
    """Each trial at its value against its number, by how it ended: complete (its final
    value), pruned (its value when stopped), and, on a strip below the axis since they have no
    value, proposals that never ran (infeasible) and failures; the best so far as a line."""
    from matplotlib.transforms import blended_transform_factory

    n = min(len(space.objectives), 3)
    fig = figure(8.5, 3.6 * n)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for index, ax in enumerate(axes):
        metric, minimize = _goal(space, index)
        complete = [(r.number, v) for r in records if r.state == "complete"
                    and (v := _value(r, metric)) is not None]  # fmt: skip
        pruned = [(r.number, v) for r in records if r.state == "pruned"
                  and (v := _value(r, metric)) is not None]  # fmt: skip
        if complete:
            ax.scatter(*zip(*complete, strict=True), color=COMPLETE, s=36, zorder=3,
                       label=f"complete ({len(complete)})")  # fmt: skip
            best, xs, ys = None, [], []
            for number, value in complete:
                if best is None or (value < best if minimize else value > best):
                    best = value
                xs.append(number)
                ys.append(best)
            xs.append(max(r.number for r in records))
            ys.append(ys[-1])
            ax.step(xs, ys, where="post", color=BEST, lw=1.8, label="best so far", zorder=2)
        if pruned:
            ax.scatter(*zip(*pruned, strict=True), facecolors="none", edgecolors=PRUNED, s=36,
                       lw=1.4, zorder=3, label=f"pruned ({len(pruned)}): value when stopped")  # fmt: skip
        strip = blended_transform_factory(ax.transData, ax.transAxes)
        for state, colour, marker, label in (("infeasible", NEVER_RAN, "|", "infeasible: never ran"),
                                             ("failed", FAILED, "x", "failed")):  # fmt: skip
            numbers = [r.number for r in records if r.state == state]
            if numbers:
                ax.scatter(numbers, [0.03] * len(numbers), transform=strip, color=colour,
                           marker=marker, s=60, lw=1.5, clip_on=False, zorder=3,
                           label=f"{label} ({len(numbers)})")  # fmt: skip
        values = [v for _, v in complete + pruned]
        if values:
            low, high = min(values), max(values)
            pad = (high - low) * 0.08 or abs(high) * 0.01 or 1.0
            ax.set_ylim(low - 2.5 * pad, high + pad)  # room for the strip at the bottom
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} ({'lower' if minimize else 'higher'} is better)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle("Optimisation history")
    return fig


def _axis_values(values: list[Any], parameter: Any) -> tuple[list[float], list[float], list[str]]:
    """Positions in [0, 1] for the values of one axis, with a few tick positions and labels."""
    if parameter is not None and parameter.type == "categorical":
        choices = [c for c in parameter.choices or () if c in values] or list(
            parameter.choices or ()
        )
        spots = {repr(c): i / max(1, len(choices) - 1) for i, c in enumerate(choices)}
        return ([spots.get(repr(v), 0.5) for v in values], list(spots.values()),
                [str(c) for c in choices])  # fmt: skip
    numbers = [float(v) for v in values]
    log = bool(parameter is not None and parameter.log and min(numbers) > 0)
    scale = math.log10 if log else (lambda x: x)
    low, high = scale(min(numbers)), scale(max(numbers))
    span = (high - low) or 1.0
    positions = [(scale(v) - low) / span for v in numbers]
    ticks = [low + span * i / 3 for i in range(4)] if high > low else [low]
    return (
        positions,
        [(t - low) / span for t in ticks],
        _distinct([10**t if log else t for t in ticks]),
    )


def _distinct(values: list[float]) -> list[str]:
    """Labels with just enough significant digits to tell the values apart."""
    for digits in range(3, 10):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def parallel_coordinates(
    records: Sequence[TrialRecord], space: SearchSpace, ranked: Sequence[str]
) -> Any:
    """One line per complete trial across the objective and the most important parameters,
    coloured by the objective (best darkest); pruned trials as thin grey lines across the
    parameters only (their values are from an earlier step, not comparable)."""
    import matplotlib as mpl

    metric, minimize = _goal(space, 0)
    by_name = {p.name: p for p in space.parameters}
    names = [n for n in ranked if n in by_name][: MAX_AXES - 1]
    shown = [r for r in records if r.state in ("complete", "pruned")
             and all(n in r.params for n in names)]  # fmt: skip
    finals = {i: v for i, r in enumerate(shown) if r.state == "complete"
              and (v := _value(r, metric)) is not None}  # fmt: skip
    stand_in = next(iter(finals.values()), 0.0)  # a pruned trial's place on an axis it skips
    columns = [(metric, *_axis_values([finals.get(i, stand_in) for i in range(len(shown))], None))]
    columns += [(n, *_axis_values([r.params[n] for r in shown], by_name[n])) for n in names]
    fig = figure(max(7.0, 1.5 * len(columns) + 2.5), 5.0)
    ax = fig.subplots()
    norm = mpl.colors.Normalize(min(finals.values()), max(finals.values())) if finals else None
    cmap = mpl.colormaps[BEST_DARKEST[minimize]]
    xs = list(range(len(columns)))
    pruned = [i for i in range(len(shown)) if i not in finals]
    for i in pruned:
        ax.plot(xs[1:], [column[1][i] for column in columns[1:]], color="#c8c8c8", lw=0.9,
                ls="--", zorder=0)  # fmt: skip
    for i in sorted(finals, key=lambda i: -finals[i] if minimize else finals[i]):  # best on top
        ys = [column[1][i] for column in columns]
        ax.plot(xs, ys, color=cmap(norm(finals[i])), lw=1.8, alpha=0.9)  # type: ignore[misc]
    for x, (_, _, ticks, labels) in zip(xs, columns, strict=True):
        ax.axvline(x, color="#444", lw=0.8)
        for tick, label in zip(ticks, labels, strict=True):
            ax.text(x + 0.03, tick, label, fontsize=7.5, va="center", ha="left", color="#333")
    ax.set_xticks(xs, [n.replace("_", " ") for n, *_ in columns], fontsize=9)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(columns) - 0.4)
    ax.set_ylim(-0.05, 1.05)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if norm is not None:
        bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8)
        bar.set_label(f"{metric} (complete trials)")
    ax.set_title(f"Parallel coordinates: {len(finals)} complete trials"
                 + (f", {len(pruned)} pruned (grey, dashed: their parameters)" if pruned else ""),
                 fontsize=10)  # fmt: skip
    return fig


def slices(records: Sequence[TrialRecord], space: SearchSpace, names: Sequence[str]) -> Any:
    """The objective against each of the most important parameters: complete trials filled,
    pruned ones hollow at their value when stopped."""
    from matplotlib import ticker

    metric, _ = _goal(space, 0)
    by_name = {p.name: p for p in space.parameters}
    fig = figure(max(6.0, 3.3 * len(names)), 3.8)
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        parameter = by_name[name]
        choices = list(parameter.choices or ())
        for state in ("pruned", "complete"):
            points = [(r.params[name], v) for r in records
                      if r.state == state and name in r.params and (v := _value(r, metric)) is not None]  # fmt: skip
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            if parameter.type == "categorical":
                index = {repr(c): i for i, c in enumerate(choices)}
                xs = tuple(index[repr(x)] for x in xs)
            if state == "complete":
                ax.scatter(xs, ys, color=COMPLETE, s=34, zorder=3, label="complete")
            else:
                ax.scatter(xs, ys, facecolors="none", edgecolors=PRUNED, s=34, lw=1.2,
                           label="pruned (when stopped)")  # fmt: skip
        if parameter.type == "categorical":
            ax.set_xticks(range(len(choices)), [str(c) for c in choices])
            ax.set_xlim(-0.5, len(choices) - 0.5)
        elif parameter.log:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0), numticks=5))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        else:
            ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
        ax.tick_params(labelsize=8)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(f"{metric} against the {len(names)} most important parameters")
    return fig


def learning_curves(
    records: Sequence[TrialRecord],
    intermediate: Mapping[int, Mapping[int, float]],
    space: SearchSpace,
) -> Any:
    """Each trial's reported values against its steps: complete trials coloured by their final
    value (best darkest, the best one thicker), pruned ones grey, ending with a cross where the
    scheduler stopped them."""
    import matplotlib as mpl

    metric, minimize = _goal(space, 0)
    state = {r.number: r.state for r in records}
    complete = {r.number: v for r in records if r.state == "complete"
                and (v := _value(r, metric)) is not None}  # fmt: skip
    fig = figure(8.5, 4.2)
    ax = fig.subplots()
    cmap = mpl.colormaps[BEST_DARKEST[minimize]]
    norm = (
        mpl.colors.Normalize(min(complete.values()), max(complete.values())) if complete else None
    )
    best = (min if minimize else max)(complete, key=complete.__getitem__) if complete else None
    stopped = 0
    for number, curve in sorted(intermediate.items()):
        if not curve or state.get(number) not in ("complete", "pruned"):
            continue
        steps = sorted(curve)
        values = [curve[s] for s in steps]
        if number in complete and norm is not None:
            ax.plot(steps, values, color=cmap(norm(complete[number])), lw=3 if number == best else 1.3,
                    zorder=3 if number == best else 2,
                    label=f"best: trial {number}" if number == best else None)  # fmt: skip
        else:
            stopped += 1
            ax.plot(steps, values, color="#b5b5b5", lw=1.0, zorder=1)
            ax.scatter([steps[-1]], [values[-1]], marker="x", color=PRUNED, s=30, zorder=2,
                       label="pruned: stopped here" if stopped == 1 else None)  # fmt: skip
    if norm is not None:
        bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.85)
        bar.set_label(f"final {metric} (complete trials)")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"Learning curves: {len(complete)} complete, {stopped} pruned", fontsize=10)
    return fig


def pareto(records: Sequence[TrialRecord], space: SearchSpace) -> Any:
    """The first two objectives of every complete trial, the Pareto front joined up."""
    (x_name, _), (y_name, _) = _goal(space, 0), _goal(space, 1)
    complete = [r for r in records if r.state == "complete"
                and _value(r, x_name) is not None and _value(r, y_name) is not None]  # fmt: skip
    front = sorted(pareto_front(complete, space), key=lambda r: _value(r, x_name) or 0.0)
    on_front = {r.number for r in front}
    fig = figure(6.5, 5.0)
    ax = fig.subplots()
    others = [r for r in complete if r.number not in on_front]
    if others:
        ax.scatter([_value(r, x_name) for r in others], [_value(r, y_name) for r in others],
                   color="#9db7d5", s=30, label=f"other trials ({len(others)})")  # fmt: skip
    ax.plot([_value(r, x_name) for r in front], [_value(r, y_name) for r in front], "-o",
            color=COMPLETE, ms=6, lw=1.2, label=f"Pareto front ({len(front)})")  # fmt: skip
    ax.set_xlabel(f"{x_name} ({space.objectives[0].direction})")
    ax.set_ylabel(f"{y_name} ({space.objectives[1].direction})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    extra = len(space.objectives) - 2
    ax.set_title("Pareto front" + (f" (first two of {extra + 2} objectives)" if extra else ""))
    return fig


def importance_bars(scores: Mapping[str, float], title: str, caveat: str = "") -> Any:
    """Horizontal bars, the most important parameter on top."""
    names = list(scores)[::-1]
    fig = figure(7.5, 0.42 * len(names) + 1.6)
    ax = fig.subplots()
    ax.barh(names, [scores[n] for n in names], color=COMPLETE)
    ax.set_xlabel("importance (share of the variance explained)")
    ax.set_title(title + (f"\n{caveat}" if caveat else ""), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig
