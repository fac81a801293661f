"""Overhead per trial: trivial Branin trials, two at a time, through ugro_hpo and its peers.

    .venv/bin/python scripts/bench/overhead.py [--trials 100]

Each system runs as its own command, from process start to exit: with 2 trials (its fixed
cost: imports, starting Ray, writing results, shutting down) and with ``--trials``, each
``--repeats`` times back to back (the median counts).
Per trial = (wall(N) - wall(2)) / (N - 2): what one more trial costs once the system is up.
Every system searches at random, so no sampler's own work is counted. ugro_hpo runs without
tracking and without the report (each is measured on its own row). The driver's peak RSS
during the N-trial run is sampled every 50 ms. Targets: <= 0.10 s per trial, driver <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchlib import PYTHON, ROOT, Result, Timed, hydra_python, run_timed

PEERS = Path(__file__).resolve().parent / "peers"
TARGET_S = 0.10
TARGET_RSS_MB = 1536


def ugro(n: int, scratch: Path, *extra: str) -> list[str]:
    return [
        PYTHON, "-m", "ugro_hpo", "objective=synthetic", "search_space=branin", "search=random",
        "scheduler=fifo", "tracking=none", "max_steps=1", "eval_every=1", f"n_trials={n}",
        "parallel_jobs=2", "ray.num_cpus=2", "report=false", f"outputs_dir={scratch}",
        f"study_name=overhead-{n}", *extra,
    ]  # fmt: skip


def hydra(n: int, scratch: Path) -> list[str]:
    return [
        hydra_python(), str(PEERS / "hydra_sweeper_app.py"), "-m", "function=branin", "dims=2",
        "hydra/sweeper/sampler=random", f"hydra.sweeper.n_trials={n}", "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={scratch}/hydra-{n}", "x1=interval(-5,10)", "x2=interval(0,15)",
    ]  # fmt: skip


SYSTEMS = {
    "ugro_hpo": lambda n, d: ugro(n, d),
    "ugro_hpo + MLflow tracking": lambda n, d: ugro(n, d, "tracking=mlflow"),
    "ugro_hpo + report": lambda n, d: ugro(n, d, "report=true"),
    "Ray Tune (defaults)": lambda n, d: [PYTHON, str(PEERS / "ray_tune_plain.py"), str(n), str(d)],
    "Ray Tune (reuse_actors=True)": lambda n, d: [
        PYTHON,
        str(PEERS / "ray_tune_plain.py"),
        str(n),
        str(d),
        "--reuse-actors",
    ],
    "Hydra Optuna sweeper": hydra,
    "Optuna in one process": lambda n, d: [PYTHON, str(PEERS / "optuna_plain.py"), str(n)],
}


def measure(command: Callable[[int, Path], list[str]], n: int, repeats: int) -> dict[str, float]:
    """Medians over ``repeats`` back-to-back pairs of runs (2 trials, then ``n``), and the
    highest peak RSS. A run over a minute is not repeated: its noise is small beside it."""
    fixed: list[Timed] = []
    full: list[Timed] = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as scratch:
            fixed.append(run_timed(command(2, Path(scratch)), cwd=ROOT))
            full.append(run_timed(command(n, Path(scratch)), cwd=ROOT))
        if full[-1].wall_s > 60:
            break
    pairs = [(b.wall_s - a.wall_s) / (n - 2) for a, b in zip(fixed, full, strict=True)]
    return {
        "per_trial_s": round(statistics.median(pairs), 4),
        "fixed_s": round(statistics.median(t.wall_s for t in fixed), 2),
        f"wall_{n}_s": round(statistics.median(t.wall_s for t in full), 2),
        "peak_rss_mb": round(max(t.peak_rss_mb for t in full)),  # memory: the worst run counts
        "runs": len(full),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument(
        "--repeats", type=int, default=3, help="pairs of runs of each command; the median counts"
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated names (a partial run prints only)",
    )
    args = parser.parse_args()
    n = args.trials
    result = Result("overhead")
    figures: dict[str, dict[str, float]] = {}
    for name in args.systems.split(","):
        command = SYSTEMS[name]
        f = figures[name] = measure(command, n, args.repeats)
        print(f"  {name}: {f['per_trial_s']:.3f} s/trial, fixed {f['fixed_s']:.1f} s, {n} trials "
              f"{f[f'wall_{n}_s']:.1f} s, peak RSS {f['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    if set(figures) != set(SYSTEMS):
        return 0  # a partial run (--systems) is for looking only: no JSON, no verdict
    ours = figures["ugro_hpo"]
    ray_default = figures["Ray Tune (defaults)"]["per_trial_s"]
    hydra_sweeper = figures["Hydra Optuna sweeper"]["per_trial_s"]
    optuna_alone = figures["Optuna in one process"]["per_trial_s"]
    for name, f in figures.items():
        target = f"<= {TARGET_S * 1000:.0f} ms" if name == "ugro_hpo" else ""
        passed = f["per_trial_s"] <= TARGET_S if name == "ugro_hpo" else None
        result.add(f"per trial: {name}",
                   f"{f['per_trial_s'] * 1000:.1f} ms (fixed {f['fixed_s']:.1f} s; {n} trials "
                   f"{f[f'wall_{n}_s']:.1f} s)", target, passed)  # fmt: skip
    result.add("ugro_hpo vs Ray Tune defaults", f"{ray_default / ours['per_trial_s']:.0f}x less per trial",
               ">= 10x", ray_default / ours["per_trial_s"] >= 10)  # fmt: skip
    result.add(f"driver peak RSS, {n} trials", f"{ours['peak_rss_mb']:.0f} MB", "<= 1536 MB",
               ours["peak_rss_mb"] <= TARGET_RSS_MB)  # fmt: skip
    result.details = {"trials": n, "parallel": 2, "systems": figures}
    return result.finish(
        f"{ours['per_trial_s']:.3f} s per trial (Ray Tune defaults {ray_default:.3f}, Hydra sweeper "
        f"{hydra_sweeper:.3f}, Optuna in-process {optuna_alone:.4f}); driver peak "
        f"{ours['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    sys.exit(main())
