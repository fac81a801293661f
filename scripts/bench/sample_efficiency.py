"""Sample efficiency: how many trials the default search needs, against random search and
Hydra's Optuna sweeper, on functions with known optima.

    .venv/bin/python scripts/bench/sample_efficiency.py [--seeds 10] [--trials 30]
        [--branin-trials 40] [--random-trials 100] [--parallel 1,4]
        [--functions branin,hartmann6,rosenbrock]

For each function (the bundled search spaces: Branin 2-D, Hartmann 6-D, Rosenbrock 5-D) and
seed, ugro_hpo runs its default search (``search=auto``) for ``--trials`` at each
``--parallel``, plus Branin at 2 parallel for ``--branin-trials``; Hydra's Optuna sweeper (its
default TPE, ``n_jobs`` = parallel, in its own venv, on a background thread) runs the same;
random search is Optuna's RandomSampler in this process for ``--random-trials`` (it does not
depend on parallelism). Best-so-far is taken in trial (ask) order. Writes the JSON and
best-so-far curves (median over seeds) as outputs/bench/sample_efficiency.png.
Targets: the default's median curve reaches random search's 100-trial median best within 30
trials at every parallelism; Branin, 40 trials, 2 parallel: median best <= 0.42.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import yaml
from benchlib import OUT_DIR, ROOT, Result, hydra_python, start_ray

from ugro_hpo import compose, run
from ugro_hpo.objectives.synthetic import FUNCTIONS

PEERS = Path(__file__).resolve().parent / "peers"
TARGET_TRIALS = 30
BRANIN_TARGET = 0.42


def bounds(function: str) -> dict[str, tuple[float, float]]:
    spec = yaml.safe_load((ROOT / "conf" / "search_space" / f"{function}.yaml").read_text())
    return {k: (float(v["min"]), float(v["max"])) for k, v in spec["parameters"].items()}


def best_so_far(values: list[float]) -> list[float]:
    out, best = [], float("inf")
    for v in values:
        best = min(best, v)
        out.append(best)
    return out


def random_search(function: str, seed: int, trials: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = bounds(function)
    fn = FUNCTIONS[function].fn
    study.optimize(
        lambda t: fn([t.suggest_float(k, lo, hi) for k, (lo, hi) in space.items()])[0],
        n_trials=trials,
    )
    return [t.value for t in study.trials]


def ugro_default(
    function: str, seed: int, trials: int, parallel: int, scratch: Path
) -> list[float]:
    import optuna

    name = f"{function}-p{parallel}-s{seed}"
    cfg = compose(
        f"outputs_dir={scratch}", "objective=synthetic", f"search_space={function}",
        "scheduler=fifo", "tracking=none", "report=false", "max_steps=1", "eval_every=1",
        f"n_trials={trials}", f"parallel_jobs={parallel}", f"seed={seed}", f"study_name={name}",
    )  # fmt: skip
    result = run(cfg, run_dir=str(scratch / name), echo=False)
    study = optuna.load_study(study_name=name, storage=result.summary["storage"])
    trials_done = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    return [t.value if t.value is not None else float("inf") for t in trials_done]


def hydra_sweeper(
    function: str, seed: int, trials: int, parallel: int, scratch: Path
) -> list[float]:
    log = scratch / f"hydra-{function}-p{parallel}-s{seed}.jsonl"
    space = bounds(function)
    params = [f"{k}=interval({lo},{hi})" for k, (lo, hi) in space.items()]
    subprocess.run(
        [hydra_python(), str(PEERS / "hydra_sweeper_app.py"), "-m", f"function={function}", f"dims={len(space)}",
         f"log={log}", f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.n_jobs={parallel}",
         f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweep.dir={scratch}/hydra-{log.stem}",
         *params],
        check=True, capture_output=True,
    )  # fmt: skip
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [r["value"] for r in sorted(rows, key=lambda r: r["number"])]


def median_curve(curves: list[list[float]]) -> list[float]:
    return [statistics.median(c[i] for c in curves) for i in range(min(map(len, curves)))]


def reached_at(curve: list[float], target: float) -> int | None:
    """The first trial count at which ``curve`` is at or below ``target``."""
    return next((i + 1 for i, v in enumerate(curve) if v <= target), None)


def plot(curves: dict[str, dict[str, list[float]]], targets: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    functions = list(curves)
    fig, axes = plt.subplots(1, len(functions), figsize=(5 * len(functions), 4), squeeze=False)
    for ax, function in zip(axes[0], functions, strict=True):
        optimum = FUNCTIONS[function].optimum or 0.0
        for label, curve in curves[function].items():
            ax.plot(range(1, len(curve) + 1), [max(v - optimum, 1e-6) for v in curve], label=label)
        ax.axhline(max(targets[function] - optimum, 1e-6), color="grey", linestyle="--",
                   label="random search, 100-trial median")  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(function)
        ax.set_xlabel("trials")
        ax.set_ylabel("best so far - optimum (median over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--branin-trials", type=int, default=40)
    parser.add_argument("--random-trials", type=int, default=100)
    parser.add_argument("--parallel", default="1,4")
    parser.add_argument("--functions", default="branin,hartmann6,rosenbrock")
    args = parser.parse_args()
    functions = args.functions.split(",")
    parallels = [int(p) for p in args.parallel.split(",")]
    runs = [(f, p) for f in functions for p in parallels]
    if "branin" in functions and 2 not in parallels:
        runs.append(("branin", 2))
    seeds = range(args.seeds)

    hydra_curves: dict[tuple[str, int], list[list[float]]] = {}
    failures: list[BaseException] = []

    def budget(function: str, parallel: int) -> int:
        return args.branin_trials if (function, parallel) == ("branin", 2) else args.trials

    def hydra_all(scratch: Path) -> None:
        try:
            for f, p in runs:
                hydra_curves[(f, p)] = [
                    best_so_far(hydra_sweeper(f, s, budget(f, p), p, scratch)) for s in seeds
                ]
        except BaseException as exc:  # reported after the main thread's work
            failures.append(exc)

    start_ray(max([*parallels, 2]))
    ours: dict[tuple[str, int], list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        hydra_python()  # create the venv before the thread needs it
        peer = threading.Thread(target=hydra_all, args=(Path(scratch),))
        peer.start()
        random = {f: [best_so_far(random_search(f, s, args.random_trials)) for s in seeds]
                  for f in functions}  # fmt: skip
        for f, p in runs:
            ours[(f, p)] = [
                best_so_far(ugro_default(f, s, budget(f, p), p, Path(scratch))) for s in seeds
            ]
            print(f"  {f} parallel {p}: median best {statistics.median(c[-1] for c in ours[(f, p)]):.4g}",
                  flush=True)  # fmt: skip
        peer.join()
    if failures:
        raise failures[0]

    result = Result("sample_efficiency")
    curves: dict[str, dict[str, list[float]]] = {f: {} for f in functions}
    targets, details = {}, {}
    for f in functions:
        target = statistics.median(c[-1] for c in random[f])
        targets[f] = target
        curves[f][f"random ({args.random_trials})"] = median_curve(random[f])
        for (g, p), per_seed in sorted(ours.items()):
            if g != f:
                continue
            curves[f][f"ugro_hpo default, {p} parallel"] = median_curve(per_seed)
            curves[f][f"Hydra sweeper, n_jobs {p}"] = median_curve(hydra_curves[(f, p)])
            at = reached_at(median_curve(per_seed), target)
            hydra_at = reached_at(median_curve(hydra_curves[(f, p)]), target)
            if p in parallels:
                result.add(
                    f"{f}, {p} parallel: trials to reach random's {args.random_trials}-trial median "
                    f"best ({target:.4g})",
                    f"{at or f'> {args.trials}'} (Hydra sweeper: {hydra_at or f'> {args.trials}'}); "
                    f"median best at {args.trials}: {statistics.median(c[-1] for c in per_seed):.4g} "
                    f"(Hydra sweeper {statistics.median(c[-1] for c in hydra_curves[(f, p)]):.4g})",
                    f"<= {TARGET_TRIALS}", at is not None and at <= TARGET_TRIALS,
                )  # fmt: skip
            details[f"{f}/p{p}"] = {
                "reached_at": at, "hydra_reached_at": hydra_at,
                "median_best": statistics.median(c[-1] for c in per_seed),
                "hydra_median_best": statistics.median(c[-1] for c in hydra_curves[(f, p)]),
                "best_by_seed": [c[-1] for c in per_seed],
                "hydra_best_by_seed": [c[-1] for c in hydra_curves[(f, p)]],
            }  # fmt: skip
        details[f"{f}/random"] = {"median_best": target, "best_by_seed": [c[-1] for c in random[f]]}
    branin = None
    if "branin" in functions:
        branin = details["branin/p2"]
        result.add(f"branin, {args.branin_trials} trials, 2 parallel: median best over {args.seeds} seeds",
                   f"{branin['median_best']:.3f} (Hydra sweeper {branin['hydra_median_best']:.3f}, "
                   f"random {statistics.median(c[args.branin_trials - 1] for c in random['branin']):.3f})",
                   f"<= {BRANIN_TARGET}", branin["median_best"] <= BRANIN_TARGET)  # fmt: skip
    png = OUT_DIR / "sample_efficiency.png"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    plot(curves, targets, png)
    result.details = {
        "seeds": args.seeds, "trials": args.trials, "branin_trials": args.branin_trials,
        "random_trials": args.random_trials,
        "random_targets": targets, "results": details, "median_curves": curves,
        "plot": str(png.relative_to(ROOT)),
    }  # fmt: skip
    reached = ", ".join(
        f"{k} {v['reached_at'] or '>' + str(args.trials)}"
        for k, v in details.items()
        if "reached_at" in v
    )
    return result.finish(
        f"trials to reach random search's {args.random_trials}-trial median: {reached}"
        + (
            f"; branin {args.branin_trials} trials, 2 parallel: median best {branin['median_best']:.3f}"
            if branin
            else ""
        )
    )


if __name__ == "__main__":
    sys.exit(main())
