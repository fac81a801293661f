"""Hydra sweeper: ours (ugro_hpo) against Hydra's Optuna sweeper, on trials of uneven length.

    .venv/bin/python scripts/bench/hydra_sweeper.py [--trials 24] [--seeds 3] [--step-s 0.25]
    .venv/bin/python scripts/bench/hydra_sweeper.py --quick    # 4 trials, 1 seed: a smoke test

``-m hydra/sweeper=ugro_hpo`` and ``-m hydra/sweeper=optuna`` run the same Hydra app.

The app (peers/uneven_app.py) runs 8 steps of ``step_s * width / 4`` seconds (a trial lasts
0.5-4 s at the default 0.25 s) and reports its loss after each step. Every sweeper searches the
same space (lr on a log scale in [1e-3, 1], width an int in [1, 8]) for ``--trials`` trials, 2
at a time, with its own default TPE seeded 0 .. seeds-1. Each configuration is one command,
timed from process start to exit, with its own scratch directory as working and sweep directory:
ugro_hpo with FIFO and with ASHA (Ray started by the sweeper on 2 CPUs, the sweeper's defaults
otherwise, its HTML report included), and Hydra's Optuna sweeper with the joblib launcher (2
jobs) in venvs of its own, made on first use: 1.4.0rc3 (Hydra 1.4.0rc3, Optuna 5 as ours) in
.venv-bench-hydra-rc, and the stable 1.3.0 (Hydra 1.3.2, Optuna 2.10) in benchlib's
.venv-bench-hydra with the joblib launcher 1.2.0 added. A peer that cannot run is recorded as
such. The Optuna sweeper launches trials in batches of n_jobs and waits for a batch's slowest;
ours starts a trial as soon as one ends, and ASHA stops poor ones early. Steps trained: the sum
of trials.csv's last_step for ours; jobs run x 8 for the Optuna sweeper (it stops none). Best
value: optimization_results.yaml's best_value (the optimum is 0.125). A --quick run writes
hydra_sweeper_quick.json, which the README's table does not show.
Targets (medians over seeds, against the 1.4.0rc3 sweeper): ugro_hpo ASHA's wall time <= 0.7x,
its steps trained <= 50%, its best value no worse (2% allowed).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from benchlib import (
    HYDRA_RC_REQUIREMENTS,
    HYDRA_RC_VENV,
    PYTHON,
    Result,
    hydra_python,
    installed_versions,
    peer_python,
    pip_install,
    run_timed,
)

APP = Path(__file__).resolve().parent / "peers" / "uneven_app.py"
STEPS = 8
PARALLEL = 2
STABLE_LAUNCHER = ("hydra-joblib-launcher", "1.2.0")  # the launcher of the 1.3 line
# The app's width is range(1, 9): 1..8, the end excluded as Hydra's range has it; the 1.3.0
# sweeper keeps the end (1..9), so it is given the range that is 1..8 to it (quoted: Hydra
# refuses a sweep of its own config on the command line).
STABLE_WIDTH = ("hydra.sweeper.params.width='range(1,8)'",)
TARGET_WALL = 0.7
TARGET_STEPS = 0.5
BEST_SLACK = 0.02
OURS_FIFO, OURS_ASHA = "ugro_hpo FIFO", "ugro_hpo ASHA"
RC, STABLE = "Optuna sweeper 1.4.0rc3", "Optuna sweeper 1.3.0"
VERSIONS = ("hydra-core", "hydra-optuna-sweeper", "hydra-joblib-launcher", "omegaconf", "optuna")
OUR_VERSIONS = ("ugro_hpo", "hydra-core", "omegaconf", "optuna", "ray")

Command = Callable[[Path, int, int, float], list[str]]


@dataclass
class Sweep:
    """One command's figures."""

    wall_s: float
    best: float
    steps: int
    trials: int  # that ran (complete or stopped early)
    stopped: int  # stopped early by the scheduler


def app_args(sweep_dir: Path, trials: int, seed: int, step_s: float) -> list[str]:
    return [str(APP), "-m", f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweeper.n_jobs={PARALLEL}",
            f"steps={STEPS}", f"step_s={step_s}"]  # fmt: skip


def ours(scheduler: str) -> Command:
    def command(sweep_dir: Path, trials: int, seed: int, step_s: float) -> list[str]:
        return [PYTHON, *app_args(sweep_dir, trials, seed, step_s), "hydra/sweeper=ugro_hpo",
                "hydra.sweeper.metric=loss", f"hydra.sweeper.max_steps={STEPS}",
                f"hydra.sweeper.scheduler={scheduler}",
                f"hydra.sweeper.ray.num_cpus={PARALLEL}"]  # fmt: skip

    return command


def optuna_sweeper(python: str, *extra: str) -> Command:
    def command(sweep_dir: Path, trials: int, seed: int, step_s: float) -> list[str]:
        return [python, *app_args(sweep_dir, trials, seed, step_s), "hydra/sweeper=optuna",
                "hydra/launcher=joblib", f"hydra.launcher.n_jobs={PARALLEL}", *extra]  # fmt: skip

    return command


def stable_python() -> str:
    """The 1.3 venv (benchlib's), with the joblib launcher of the same line added."""
    python = hydra_python()
    name, version = STABLE_LAUNCHER
    if installed_versions(python, [name])[name] != version:
        pip_install(python, [f"{name}=={version}"])
    return python


def measure(command: Command, trials: int, seed: int, step_s: float, ugro: bool) -> Sweep:
    with tempfile.TemporaryDirectory() as scratch:
        sweep_dir = Path(scratch) / "sweep"
        timed = run_timed(command(sweep_dir, trials, seed, step_s), cwd=Path(scratch))
        results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
        if ugro:
            with open(sweep_dir / "trials.csv", newline="") as file:
                rows = [r for r in csv.DictReader(file) if r["state"] in ("complete", "pruned")]
            steps = sum(int(r["last_step"] or 0) for r in rows)
            ran, stopped = len(rows), sum(r["state"] == "pruned" for r in rows)
        else:  # every job ran every step; each has its own numbered directory
            ran, stopped = sum(p.name.isdigit() for p in sweep_dir.iterdir()), 0
            steps = ran * STEPS
    return Sweep(timed.wall_s, float(results["best_value"]), steps, ran, stopped)


def one_line(exc: BaseException) -> str:
    """The last line of an error that says what went wrong (not Hydra's hint about traces)."""
    lines = [line.strip() for line in str(exc).splitlines()
             if line.strip() and "HYDRA_FULL_ERROR" not in line]  # fmt: skip
    return lines[-1] if lines else type(exc).__name__


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--trials", type=int, default=24, help="trials per sweep")
    parser.add_argument("--seeds", type=int, default=3, help="sweeps per configuration")
    parser.add_argument("--step-s", type=float, default=0.25,
                        help="seconds per step at width 4 (width w: step_s * w / 4)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="4 trials, 1 seed: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.seeds = 4, 1

    commands: dict[str, Command] = {OURS_FIFO: ours("fifo"), OURS_ASHA: ours("asha")}
    versions = {"ugro_hpo": installed_versions(PYTHON, OUR_VERSIONS)}
    could_not_run: dict[str, str] = {}
    for name, make, extra in (
        (RC, lambda: peer_python(HYDRA_RC_VENV, HYDRA_RC_REQUIREMENTS), ()),
        (STABLE, stable_python, STABLE_WIDTH),
    ):
        try:
            python = make()
            versions[name] = installed_versions(python, VERSIONS)
            commands[name] = optuna_sweeper(python, *extra)
        except Exception as exc:  # a peer that cannot be installed is recorded, not fatal
            could_not_run[name] = f"installing it failed: {one_line(exc)}"

    sweeps: dict[str, list[Sweep]] = {name: [] for name in commands}
    for seed in range(args.seeds):
        for name, command in commands.items():
            if name in could_not_run:
                continue
            try:
                s = measure(command, args.trials, seed, args.step_s, name.startswith("ugro_hpo"))
            except Exception as exc:
                if name.startswith("ugro_hpo"):
                    raise  # ours failing is the benchmark failing
                could_not_run[name] = one_line(exc)
                continue
            sweeps[name].append(s)
            print(f"  seed {seed}, {name}: {s.wall_s:.1f} s, best {s.best:.4f}, {s.steps} steps "
                  f"({s.trials} trials, {s.stopped} stopped early)", flush=True)  # fmt: skip

    ran = {name: runs for name, runs in sweeps.items() if name not in could_not_run}
    wall = {name: statistics.median(s.wall_s for s in runs) for name, runs in ran.items()}
    best = {name: statistics.median(s.best for s in runs) for name, runs in ran.items()}
    steps = {name: sum(s.steps for s in runs) for name, runs in ran.items()}

    result = Result("hydra_sweeper_quick" if args.quick else "hydra_sweeper")
    seeds = f"{args.seeds} seed{'s' if args.seeds != 1 else ''}"
    setting = f"{args.trials} trials, {PARALLEL} at a time, median of {seeds}"
    for name in sweeps:
        if name in could_not_run:
            result.add(f"wall time: {name}", f"could not run: {could_not_run[name]}")
            continue
        result.add(f"wall time: {name} ({setting})",
                   f"{wall[name]:.1f} s (best {best[name]:.4f}, "
                   f"{steps[name] / args.seeds:.0f} steps per sweep)")  # fmt: skip
    peer = next((name for name in (RC, STABLE) if name in ran), None)
    if peer is None:
        result.add("ugro_hpo ASHA against the Optuna sweeper", "no Optuna sweeper ran",
                   "a peer runs", False)  # fmt: skip
        result.details = {"could_not_run": could_not_run, "versions": versions}
        return result.finish(f"no Optuna sweeper ran ({'; '.join(could_not_run.values())})")
    ratio = wall[OURS_ASHA] / wall[peer]
    share = steps[OURS_ASHA] / steps[peer]
    others = ", ".join(f"{name} {best[name]:.4f}" for name in ran if name not in (OURS_ASHA, peer))
    result.add(f"wall time: ugro_hpo ASHA / {peer}",
               f"{ratio:.2f}x ({wall[OURS_ASHA]:.1f} s / {wall[peer]:.1f} s; "
               f"FIFO {wall[OURS_FIFO] / wall[peer]:.2f}x)",
               f"<= {TARGET_WALL}x", ratio <= TARGET_WALL)  # fmt: skip
    result.add(f"steps trained: ugro_hpo ASHA / {peer}",
               f"{share:.0%} ({steps[OURS_ASHA]} of {steps[peer]} over {seeds})",
               f"<= {TARGET_STEPS:.0%}", share <= TARGET_STEPS)  # fmt: skip
    result.add(f"best value (median over seeds): ugro_hpo ASHA vs {peer}",
               f"{best[OURS_ASHA]:.4f} vs {best[peer]:.4f} ({others}; optimum 0.125)",
               f"<= theirs + {BEST_SLACK:.0%}",
               best[OURS_ASHA] <= best[peer] * (1 + BEST_SLACK))  # fmt: skip
    result.details = {
        "trials": args.trials, "seeds": args.seeds, "parallel": PARALLEL, "steps": STEPS,
        "step_s": args.step_s, "app": str(APP.name),
        "samplers": "each sweeper's default TPE (the Optuna sweeper's preset: 10 random "
                    "startup trials, neither multivariate nor constant liar), seed = seed",
        "median_wall_s": {k: round(v, 2) for k, v in wall.items()},
        "median_best": best, "steps_trained": steps,
        "runs": {name: [vars(s) for s in runs] for name, runs in sweeps.items()},
        "could_not_run": could_not_run, "versions": versions,
    }  # fmt: skip
    return result.finish(
        f"{setting}: ugro_hpo ASHA {wall[OURS_ASHA]:.1f} s vs {peer} {wall[peer]:.1f} s "
        f"({ratio:.2f}x), {share:.0%} of its steps, best {best[OURS_ASHA]:.4f} vs "
        f"{best[peer]:.4f}"
    )


if __name__ == "__main__":
    sys.exit(main())
