"""Sample efficiency on Branin: the default sampler (auto) vs TPE and random search, 40 trials, 2 at a time.

    .venv/bin/python scripts/bench/branin.py [--seeds 10] [--trials 40] [--parallel 2] [--searches auto,tpe,random]

Runs every study through ugro_hpo itself (one Ray instance for all), writes
outputs/bench/branin.json, and prints a one-line verdict. Branin's minimum is 0.397887.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray

from ugro_hpo import compose, run
from ugro_hpo.objectives.synthetic import FUNCTIONS

OPTIMUM = FUNCTIONS["branin"].optimum or 0.0


def best_value(search: str, seed: int, trials: int, parallel: int, outputs: Path) -> float:
    cfg = compose(
        f"outputs_dir={outputs}", "objective=synthetic", "search_space=branin", f"search={search}",
        "scheduler=fifo", "tracking=none", "max_steps=1", "eval_every=1", f"n_trials={trials}",
        f"parallel_jobs={parallel}", f"seed={seed}", f"study_name=branin-{search}-{seed}",
    )  # fmt: skip
    result = run(cfg, run_dir=str(outputs / f"{search}-{seed}"), echo=False)
    return float(result.summary["best"]["metrics"]["value"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--searches", default="auto,tpe,random")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=args.parallel, include_dashboard=False, log_to_driver=False)
    started = time.time()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for search in args.searches.split(","):
            results[search] = [
                best_value(search, s, args.trials, args.parallel, Path(scratch))
                for s in range(args.seeds)
            ]
    summary = {
        "benchmark": "branin", "optimum": OPTIMUM, "trials": args.trials, "parallel_jobs": args.parallel,
        "seeds": args.seeds, "best_by_seed": results,
        "median_best": {k: statistics.median(v) for k, v in results.items()},
        "seeds_within_0.5": {k: sum(x - OPTIMUM <= 0.5 for x in v) for k, v in results.items()},
        "wall_s": round(time.time() - started, 1),
    }  # fmt: skip
    out = Path("outputs/bench/branin.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    first, *others = list(results)
    verdict = all(summary["median_best"][first] < summary["median_best"][o] for o in others)
    medians = ", ".join(f"{k} {v:.3f}" for k, v in summary["median_best"].items())
    print(f"branin {args.trials} trials x {args.seeds} seeds, {args.parallel} parallel: median best {medians}; "
          f"{first} within 0.5 of the optimum on {summary['seeds_within_0.5'][first]}/{args.seeds} seeds -> "
          f"{'PASS' if verdict else 'FAIL'} ({out})")  # fmt: skip
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
