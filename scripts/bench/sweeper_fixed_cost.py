"""Hydra sweeper on quick sweeps: what a sweep costs before its first trial, where a trivial
20-trial sweep's seconds go, and from what trial length on ours is the quicker.

    .venv/bin/python scripts/bench/sweeper_fixed_cost.py [--repeats 3] [--trials 20]
    .venv/bin/python scripts/bench/sweeper_fixed_cost.py --quick    # 1 repeat, 2 trial lengths

1. A trivial app (peers/hydra_sweeper_app.py, Branin, no sleep), ``--trials`` trials one at a
   time as the Optuna sweeper's examples run them, random search: ``hydra/sweeper=ugro_hpo``
   (Ray started by the sweeper on 2 CPUs, no report) against Hydra's Optuna sweeper 1.4.0rc3
   and 1.3.0 in venvs of their own (benchlib), each a whole command from process start to
   exit, interleaved ``--repeats`` times (the median counts).
2. One more run of ours, traced (this script with ``--trace``: functions wrapped as their
   modules are first imported), split into phases; "before the first trial" is from the
   process start to the first trial's result (a trivial trial ends as it starts).
3. Trials of uneven length (peers/uneven_app.py: 8 steps, a trial lasts 8 * step_s * width / 4
   s, width 1..8), 2 at a time, FIFO for ours, at a few ``step_s``: the wall time of ours over
   the 1.4.0rc3 sweeper's, and the mean trial length from which ours is the quicker (where
   straight lines fitted to each one's wall times meet).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = HERE / "peers" / "hydra_sweeper_app.py"
UNEVEN = HERE / "peers" / "uneven_app.py"
TRIVIAL = ["-m", "function=branin", "dims=2", "x1=interval(-5,10)", "x2=interval(0,15)",
           "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0"]  # fmt: skip
OURS = ["hydra/sweeper=ugro_hpo", "hydra.sweeper.report=false", "hydra.sweeper.ray.num_cpus=2"]
MEAN_WIDTH = 4.5  # width is range(1, 9): 1..8
STEPS = 8
PHASES = [  # (name, from mark, to mark); "start" is the process start, "exit" its end
    ("Python, Hydra and the app's config", "start", "> _sweep"),
    ("the sweeper's set-up (checks, our config, the plan)", "> _sweep", "> run"),
    ("starting Ray", "> start_ray", "< start_ray"),
    ("storage, study and Tune's set-up", "< start_ray", "> fit"),
    ("first trial (a worker started, the job composed)", "> fit", "first trial result"),
    ("the trials", "first trial result", "last trial complete"),
    ("Tune's end, results, Ray stopping", "last trial complete", "main returned"),
    ("exit", "main returned", "exit"),
]


def trivial(python: str, scratch: Path, trials: int, ours: bool) -> list[str]:
    sweeper = OURS if ours else ["hydra/sweeper=optuna"]
    return [python, str(APP), *TRIVIAL, *sweeper, f"hydra.sweeper.n_trials={trials}",
            "hydra.sweeper.n_jobs=1", f"hydra.sweep.dir={scratch}/sweep"]  # fmt: skip


def uneven(python: str, scratch: Path, step_s: float, ours: bool, stable: bool) -> list[str]:
    sweeper = [*OURS, "hydra.sweeper.metric=loss", f"hydra.sweeper.max_steps={STEPS}"] if ours else [
        "hydra/sweeper=optuna", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        *(["hydra.sweeper.params.width='range(1,8)'"] if stable else [])]  # fmt: skip
    return [python, str(UNEVEN), "-m", f"hydra.sweep.dir={scratch}/sweep", f"step_s={step_s}",
            "hydra.sweeper.n_jobs=2", *sweeper]  # fmt: skip


def timed(command: list[str]) -> float:
    from benchlib import run_timed

    with tempfile.TemporaryDirectory() as scratch:
        command = [part.replace("{scratch}", scratch) for part in command]
        return run_timed(command, cwd=Path(scratch)).wall_s


def traced_phases(trials: int) -> dict[str, float]:
    from benchlib import PYTHON, run_timed

    with tempfile.TemporaryDirectory() as scratch:
        marks_file = Path(scratch) / "marks"
        command = trivial(PYTHON, Path(scratch), trials, ours=True)
        started = time.time()
        run_timed([PYTHON, __file__, "--trace", str(marks_file), *command[1:]], cwd=Path(scratch))
        marks: dict[str, float] = {"start": started, "exit": time.time()}
        for line in marks_file.read_text().splitlines():
            stamp, what = line.split(" ", 1)
            if what == "trial complete":
                marks["last trial complete"] = float(stamp)
            else:
                marks.setdefault(what, float(stamp))
    phases = {name: round(marks[end] - marks[begin], 2) for name, begin, end in PHASES}
    phases["before the first trial"] = round(marks["first trial result"] - started, 2)
    return phases


def trace(marks_file: str, script: str, *args: str) -> None:
    """Run ``script`` as its own ``__main__`` with the sweep's phases marked (see the module)."""
    import runpy

    sys.argv = [sys.argv[0], marks_file]  # phase_trace reads its marks file from argv[1]
    sys.path.insert(0, str(HERE))
    import phase_trace

    phase_trace.PATCHES.update({
        "ugro_hpo.sweeper.sweep": lambda m: phase_trace.timed(m.HydraSweep, "_sweep"),
        "ugro_hpo.pipeline": lambda m: [phase_trace.timed(m, n) for n in ("run", "finish")],
    })  # fmt: skip
    sys.meta_path.insert(0, phase_trace.PatchOnImport())
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        phase_trace.mark("main returned")


def crossover(uneven: dict[str, dict[str, float]]) -> str:
    """The mean trial length where ours becomes the quicker: where the straight lines fitted
    (least squares) to each sweeper's wall time over the mean trial length meet."""
    lines = {}
    for who in ("ugro_hpo", "rc3"):
        xs = [run["mean_trial_s"] for run in uneven.values()]
        ys = [run[who] for run in uneven.values()]
        if len(xs) < 2:
            return "not measured"
        slope = statistics.linear_regression(xs, ys).slope
        lines[who] = (slope, statistics.fmean(ys) - slope * statistics.fmean(xs))
    (a, b), (c, d) = lines["ugro_hpo"], lines["rc3"]
    if a >= c:  # ours grows as fast or faster: it is never the quicker
        return "never, on these points"
    return f"{(b - d) / (c - a):.0f} s (where fitted lines meet)"


def main() -> int:
    from benchlib import HYDRA_RC_REQUIREMENTS, HYDRA_RC_VENV, PYTHON, Result, peer_python
    from hydra_sweeper import stable_python

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--step-s", type=float, nargs="*", default=[0.05, 0.25, 0.5])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.step_s = 1, [0.05, 0.25]
    rc = peer_python(HYDRA_RC_VENV, HYDRA_RC_REQUIREMENTS)
    stable = stable_python()
    pythons = {"ugro_hpo": PYTHON, "Optuna sweeper 1.4.0rc3": rc, "Optuna sweeper 1.3.0": stable}
    walls: dict[str, list[float]] = {name: [] for name in pythons}
    for _ in range(args.repeats):
        for name, python in pythons.items():
            command = trivial(python, Path("{scratch}"), args.trials, ours=name == "ugro_hpo")
            walls[name].append(timed(command))
    medians = {name: statistics.median(times) for name, times in walls.items()}
    phases = traced_phases(args.trials)
    points: list[tuple[float, float]] = []
    uneven_walls: dict[str, Any] = {}
    for step_s in args.step_s:
        ours = timed(uneven(PYTHON, Path("{scratch}"), step_s, ours=True, stable=False))
        theirs = timed(uneven(rc, Path("{scratch}"), step_s, ours=False, stable=False))
        length = STEPS * step_s * MEAN_WIDTH / 4
        points.append((length, ours / theirs))
        uneven_walls[f"{step_s}"] = {"mean_trial_s": length, "ugro_hpo": ours, "rc3": theirs}
        print(f"  uneven trials, mean {length:.2f} s: ours {ours:.1f} s, 1.4.0rc3 {theirs:.1f} s")

    result = Result("sweeper_fixed_cost")
    setting = f"{args.trials} trivial trials, one at a time, median of {args.repeats}"
    for name, wall in medians.items():
        result.add(f"whole sweep, {setting}: {name}", f"{wall:.1f} s")
    result.add("ugro_hpo sweep before its first trial (one traced run)",
               f"{phases['before the first trial']:.1f} s")  # fmt: skip
    result.add("where a trivial ugro_hpo sweep's time goes (one traced run)",
               ", ".join(f"{n} {s:.1f} s" for n, s in phases.items() if n != "before the first trial"))  # fmt: skip
    result.add("wall time ugro_hpo FIFO / Optuna sweeper 1.4.0rc3, 24 uneven trials 2 at a time",
               ", ".join(f"{r:.2f}x at a mean trial of {t:.1f} s" for t, r in points))  # fmt: skip
    result.add(
        "mean trial length from which ugro_hpo (FIFO) is the quicker", crossover(uneven_walls)
    )
    for name, seconds in phases.items():
        print(f"  {name}: {seconds:.2f} s")
    result.details = {"trials": args.trials, "runs": walls, "phases": phases,
                      "uneven": uneven_walls}  # fmt: skip
    ours, theirs = medians["ugro_hpo"], medians["Optuna sweeper 1.4.0rc3"]
    return result.finish(
        f"{setting}: ugro_hpo {ours:.1f} s, Optuna sweeper 1.4.0rc3 {theirs:.1f} s; "
        f"{phases['before the first trial']:.1f} s before the first trial; quicker from a mean "
        f"trial of {crossover(uneven_walls)}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--trace":
        trace(sys.argv[2], *sys.argv[3:])
    else:
        sys.exit(main())
