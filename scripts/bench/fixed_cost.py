"""Fixed cost: a whole 20-trial study against Ray's own floor, and where the seconds go.

    .venv/bin/python scripts/bench/fixed_cost.py [--repeats 5] [--trials 20]

Side by side in one run, interleaved, ``--repeats`` times each (the median counts), every one
a whole command from process start to exit:

- Ray's floor: a bare process that imports Ray, starts it, runs one task and shuts it down;
- ugro_hpo: a study of ``--trials`` trivial trials (Branin, random search, two at a time, no
  tracking, no report), the command a quick try, a test or a multirun job runs;
- for reference, Hydra's Optuna sweeper on the same trials (no Ray at all) and plain Ray Tune
  (reuse_actors=True, nothing stored).

Target: ugro_hpo within 2 s of Ray's floor. One more run under `phase_trace.py` splits the
study's time into phases (start-up and plan, Ray, storage, first trial, trials, Tune's end,
summary and files, exit).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import PYTHON, ROOT, Result, hydra_python, run_timed

HERE = Path(__file__).resolve().parent
TARGET_S = 2.0
FLOOR = (
    "import ray\n"
    "ray.init(address='local', num_cpus=2, include_dashboard=False)\n"
    "ray.get(ray.remote(lambda: 1).remote())\n"
    "ray.shutdown()\n"
)


def ugro(n: int, scratch: Path) -> list[str]:
    return [
        "objective=synthetic", "search_space=branin", "search=random", "scheduler=fifo",
        "tracking=none", "max_steps=1", "eval_every=1", f"n_trials={n}", "parallel_jobs=2",
        "ray.num_cpus=2", "report=false", f"outputs_dir={scratch}", "study_name=fixed-cost",
    ]  # fmt: skip


def commands(n: int, scratch: Path) -> dict[str, list[str]]:
    return {
        "Ray's floor (import, init, one task, shutdown)": [PYTHON, "-c", FLOOR],
        "ugro_hpo": [PYTHON, "-m", "ugro_hpo", *ugro(n, scratch)],
        "Hydra Optuna sweeper (no Ray)": [
            hydra_python(),
            str(HERE / "peers" / "hydra_sweeper_app.py"),
            "-m",
            "function=branin",
            "dims=2",
            "hydra/sweeper/sampler=random",
            f"hydra.sweeper.n_trials={n}",
            "hydra.sweeper.n_jobs=2",
            f"hydra.sweep.dir={scratch}/hydra",
            "x1=interval(-5,10)",
            "x2=interval(0,15)",
        ],
        "plain Ray Tune (reuse_actors=True)": [
            PYTHON,
            str(HERE / "peers" / "ray_tune_plain.py"),
            str(n),
            str(scratch),
            "--reuse-actors",
        ],
    }


PHASES = [  # (name, from mark, to mark); "start" is the process start, "exit" its end
    ("start-up, config and plan", "start", "< build_plan"),
    ("objective set-up, starting Ray", "< build_plan", "< start_ray"),
    ("trackers, storage and study", "< start_ray", "> run_trials"),
    ("first trial (Tune's set-up, a worker started)", "> run_trials", "first trial result"),
    ("the trials", "first trial result", "last trial complete"),
    ("Tune's end (workers stopped)", "last trial complete", "< run_trials"),
    ("summary and files (Ray stopping meanwhile)", "< run_trials", "main returned"),
    ("exit", "main returned", "exit"),
]


def breakdown(n: int) -> dict[str, float]:
    """One traced run of the study: seconds per phase."""
    with tempfile.TemporaryDirectory() as scratch:
        marks_file = Path(scratch) / "marks"
        started = time.time()
        run_timed([PYTHON, str(HERE / "phase_trace.py"), str(marks_file), *ugro(n, Path(scratch))])
        ended = time.time()
        marks: dict[str, float] = {"start": started, "exit": ended}
        for line in marks_file.read_text().splitlines():
            stamp, what = line.split(" ", 1)
            if what == "trial complete":
                marks["last trial complete"] = float(stamp)
            else:
                marks.setdefault(what, float(stamp))
    return {name: round(marks[end] - marks[begin], 2) for name, begin, end in PHASES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {}
    names = list(commands(args.trials, ROOT))
    for _ in range(args.repeats):
        for name in names:
            with tempfile.TemporaryDirectory() as scratch:
                command = commands(args.trials, Path(scratch))[name]
                walls.setdefault(name, []).append(run_timed(command, cwd=ROOT).wall_s)
    medians = {name: round(statistics.median(times), 2) for name, times in walls.items()}
    phases = breakdown(args.trials)
    floor = medians["Ray's floor (import, init, one task, shutdown)"]
    ours = medians["ugro_hpo"]
    result = Result("fixed_cost")
    for name, wall in medians.items():
        extra = f" (+{wall - floor:.1f} s over Ray's floor)" if name == "ugro_hpo" else ""
        target = f"<= floor + {TARGET_S:g} s" if name == "ugro_hpo" else ""
        passed = ours - floor <= TARGET_S if name == "ugro_hpo" else None
        label = f"{args.trials} trials: {name}" if "floor" not in name else name
        result.add(f"whole command, {label}", f"{wall:.1f} s{extra}", target, passed)
    result.add("where a ugro_hpo study's time goes (one traced run)",
               ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()))  # fmt: skip
    for name, seconds in phases.items():
        print(f"  {name}: {seconds:.2f} s")
    result.details = {"trials": args.trials, "runs": walls, "medians": medians, "phases": phases}
    return result.finish(
        f"ugro_hpo {ours:.1f} s, Ray's floor {floor:.1f} s (+{ours - floor:.1f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
