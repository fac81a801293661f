"""How long the default search takes to propose a trial as a study grows.

    .venv/bin/python scripts/bench/ask_latency.py [--trials 300] [--parallel 2]

Runs ugro_hpo's default search (``search=auto``: a Gaussian process on Branin, handed to TPE
after 100 trials) for ``--trials`` trials on Branin, ``--parallel`` at a time, and times every
proposal the searcher makes for Ray Tune (`StudySearcher.suggest` when it returns a trial's
configuration: the budget check, Optuna's ask, the sampling, the claim). Reports the median,
the 95th percentile and the slowest per block of 100 trials.
Target: no proposal slower than 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import Result, start_ray

from ugro_hpo import compose, run
from ugro_hpo.optimize.searcher import StudySearcher

TARGET_S = 0.5


def timed_proposals() -> list[tuple[int, float]]:
    """Wrap the searcher's `suggest` so each proposal's time is kept as (order, seconds)."""
    seen: list[tuple[int, float]] = []
    original = StudySearcher.suggest

    def suggest(self, trial_id):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        made = original(self, trial_id)
        if isinstance(made, dict):
            seen.append((len(seen), time.perf_counter() - started))
        return made

    StudySearcher.suggest = suggest  # type: ignore[method-assign]
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    start_ray(num_cpus=args.parallel)
    seen = timed_proposals()
    with tempfile.TemporaryDirectory() as scratch:
        cfg = compose(
            f"outputs_dir={scratch}", "objective=synthetic", "search_space=branin", "scheduler=fifo",
            "tracking=none", "report=false", "max_steps=1", "eval_every=1", f"n_trials={args.trials}",
            f"parallel_jobs={args.parallel}", "study_name=ask-latency",
        )  # fmt: skip
        result = run(cfg, run_dir=str(Path(scratch) / "run"), echo=False)
    times = [s for _, s in seen]
    report = Result("ask_latency")
    for start in range(0, len(times), 100):
        block = sorted(times[start : start + 100])
        p95 = block[int(0.95 * (len(block) - 1))]
        report.add(
            f"branin, {args.parallel} parallel: proposals {start + 1}-{start + len(block)}",
            f"median {statistics.median(block) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"slowest {block[-1] * 1000:.0f} ms",
        )
    slowest = max(times)
    report.add(f"slowest of {len(times)} proposals ({result.summary['sampler']})",
               f"{slowest:.3f} s", f"<= {TARGET_S} s", slowest <= TARGET_S)  # fmt: skip
    report.details = {"seconds": times}
    return report.finish(f"slowest proposal {slowest:.3f} s over {len(times)} trials")


if __name__ == "__main__":
    raise SystemExit(main())
