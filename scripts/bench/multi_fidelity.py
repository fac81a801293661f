"""Multi-fidelity search on real learning curves: YAHPO Gym's LCBench surrogate, trained epoch
by epoch, against random search + ASHA, Optuna's TPE + Hyperband and DEHB.

    .venv/bin/python scripts/bench/multi_fidelity.py [--quick] [--tasks 3945,34539,...]
        [--seeds 2] [--budget 5] [--time-scale auto] [--methods ...] [--data DIR]

Each run is one method on one LCBench task (an OpenML task id) with one seed: 4 workers train
configurations epoch by epoch, each epoch really waiting the surrogate's own training time
times the time scale (``auto``: the task's median 52-epoch training lasts 2 s) and reporting
its validation error (100 - accuracy, %), until every worker has spent the budget
(``--budget`` times the task's median 52-epoch training time, on every worker: about 20
trainings' worth of epochs). Time is each worker's simulated clock (see `worker_clocks`).
The methods, each over the same tasks and seeds:

- ``random_asha``: random search + ASHA, through ugro_hpo (``search=random scheduler=asha``);
- ``ours``: ugro_hpo as users get it (``search=auto scheduler=asha``);
- ``optuna_tpe_hyperband``: Optuna in one process, TPE + its Hyperband pruner, 4 threads;
- ``dehb``: DEHB (``dehb`` on PyPI) by ask and tell, 4 threads, in the YAHPO/DEHB venv;
- more with ``--methods``: ``multi_fidelity``, ``tpe_asha``, ``gp_asha`` (ugro_hpo with that
  ``search=`` and ASHA; each adds about 10 minutes to the defaults' 20).

Regret: the normalised regret of the best validation error any epoch has reached so far,
``(best - accuracy) / (best - worst)`` with YAHPO's per-task best and worst accuracy. Figures:
for each method, the median over tasks and seeds of the simulated time to reach random search +
ASHA's final regret of the same task and seed, and of the final regret.
Target: ours reaches random + ASHA's final regret in at most half random + ASHA's time (median
of the per-run ratios), with a median final regret no worse than DEHB's and Optuna's.

The surrogate is queried with onnxruntime in this project's environment (the ``bench`` extra,
installed on first use); each run first checks it against yahpo-gym itself, in its own venv
(``.venv-bench-yahpo``, made on first use, which also holds DEHB), on ``--check-points`` points.
Writes outputs/bench/multi_fidelity.json and the median regret curves as multi_fidelity.png.
Exits 0 when the target is met, 1 when not, 2 when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchlib import OUT_DIR, PYTHON, ROOT, Result, peer_python, pip_install

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
YAHPO_VENV = ROOT / ".venv-bench-yahpo"
YAHPO_REQUIREMENTS = ("yahpo-gym==1.0.2", "dehb==0.1.2")
SPACE_FILE = BENCH / "lcbench_space.yaml"
WORKERS = 4
AUTO_TRAINING_S = 2.0  # --time-scale auto: a task's median 52-epoch training lasts this long
TARGET_TIME = 0.5
OURS = "ours"
BASELINE = "random_asha"
UGRO_METHODS = {"random_asha": "random", "ours": "auto", "multi_fidelity": "multi_fidelity",
                "tpe_asha": "tpe", "gp_asha": "gp", "warm_started": "auto"}  # fmt: skip
WARM = "warm_started"  # ours, warm-started from ours' study of the task before it (same seed)
PEER_METHODS = ("optuna_tpe_hyperband", "dehb")
DEFAULT_METHODS = ("random_asha", "ours", "optuna_tpe_hyperband", "dehb")
LABELS = {"random_asha": "random search + ASHA", "ours": "ugro_hpo search=auto + ASHA",
          "multi_fidelity": "ugro_hpo search=multi_fidelity + ASHA",
          "tpe_asha": "ugro_hpo search=tpe + ASHA", "gp_asha": "ugro_hpo search=gp + ASHA",
          "optuna_tpe_hyperband": "Optuna TPE + Hyperband pruner", "dehb": "DEHB",
          "warm_started": "ugro_hpo search=auto + ASHA, warm_start from the task before"}  # fmt: skip


def ensure_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("multi_fidelity: installing the bench extra (onnxruntime) into this environment",
              flush=True)  # fmt: skip
        pip_install(sys.executable, ["-e", f"{ROOT}[bench]"])


def median_training_s(lc: Any, task: str) -> float:
    """The task's median 52-epoch training time over 500 random configurations."""
    from lcbench import random_configs

    return float(statistics.median(lc.curves(task, random_configs(500, seed=0)).elapsed[:, -1]))


def check_surrogate(lc: Any, points: int) -> dict[str, Any]:
    """Our onnxruntime answers against yahpo-gym's on ``points`` random points (task, epoch,
    configuration): the largest absolute difference of each output."""
    import numpy as np
    from lcbench import EPOCHS, OUTPUTS, PARAMETERS, random_configs

    rng = np.random.default_rng(1)
    configs = random_configs(points, seed=1)
    tasks = [str(t) for t in rng.choice(lc.tasks, points)]
    epochs = [int(e) for e in rng.integers(1, EPOCHS + 1, points)]
    # One batch, as yahpo-gym sends it (a float32 network's last digits depend on the batch).
    ours = lc.predict(tasks, np.array([[e, *(c[p] for p in PARAMETERS)]
                                       for e, c in zip(epochs, configs, strict=True)]))  # fmt: skip
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "points.json"
        path.write_text(json.dumps([{"task": t, "epoch": e, **c}
                                    for t, e, c in zip(tasks, epochs, configs, strict=True)]))  # fmt: skip
        done = subprocess.run(
            [peer_python(YAHPO_VENV, YAHPO_REQUIREMENTS), str(PEERS / "yahpo_reference.py"),
             str(lc.data), str(path)],
            capture_output=True, text=True, env={**os.environ, "HOME": home}, check=True,
        )  # fmt: skip
    reference = json.loads(done.stdout.strip().splitlines()[-1])
    theirs = np.array(reference["outputs"])
    order = [reference["targets"].index(name) for name in OUTPUTS]
    diff = np.abs(ours - theirs[:, order]).max(axis=0)
    versions = subprocess.run(
        [peer_python(YAHPO_VENV, YAHPO_REQUIREMENTS), "-c",
         "import importlib.metadata as m; print(m.version('yahpo-gym'), m.version('onnxruntime'))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    import onnxruntime

    return {"points": points, "max_abs_diff": dict(zip(OUTPUTS, diff.tolist(), strict=True)),
            "yahpo_gym": versions[0], "their_onnxruntime": versions[1],
            "our_onnxruntime": onnxruntime.__version__}  # fmt: skip


def ask_latency(trials: int = 300, asks: int = 20) -> list[float]:
    """Seconds per ask of ``search=multi_fidelity`` on a SQLite study of ``trials`` trials left
    as ASHA leaves them (each stopped at a rung, the best four running with their reports)."""
    import optuna
    from lcbench import SPACE
    from optuna.trial import TrialState, create_trial

    from ugro_hpo.optimize.multi_fidelity import MultiFidelitySampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        name: optuna.distributions.IntDistribution(int(lo), int(hi), log=log) if integer
        else optuna.distributions.FloatDistribution(lo, hi, log=log)
        for name, (lo, hi, log, integer) in SPACE.items()
    }  # fmt: skip
    import random

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as scratch:
        storage = optuna.storages.RDBStorage(f"sqlite:///{scratch}/latency.db")
        study = optuna.create_study(
            storage=storage, sampler=MultiFidelitySampler(seed=0, min_observations=None)
        )
        for number in range(trials):
            params = {n: d.to_external_repr(rng.uniform(d.low, d.high)) if isinstance(
                d, optuna.distributions.FloatDistribution) else rng.randint(d.low, d.high)
                for n, d in distributions.items()}  # fmt: skip
            stopped = 2 ** min(5, int(-math.log2(1 - rng.random())))  # rung k with odds 2^-k
            curve = {s: rng.random() / s for s in range(1, stopped + 1)}
            state = TrialState.RUNNING if number >= trials - WORKERS else TrialState.PRUNED
            study.add_trial(create_trial(state=state, params=params, distributions=distributions,
                                         intermediate_values=curve))  # fmt: skip
        seconds = []
        for _ in range(asks):
            started = time.perf_counter()
            trial = study.ask(distributions)
            seconds.append(time.perf_counter() - started)
            study.tell(trial, state=TrialState.FAIL)
    return seconds


def run_ugro(method: str, run: Any, seed: int, scratch: Path, deadline_s: float,
             warm_from: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One ugro_hpo study until every worker has spent the budget, then Ctrl-C, as a person
    would end it (the study keeps what finished)."""
    from lcbench_objective import LCBenchObjective
    from worker_clocks import WorkerClocks

    from ugro_hpo import compose
    from ugro_hpo.pipeline import run as run_study

    name = f"{method}-{run.task}-{seed}"
    cfg = compose(
        f"outputs_dir={scratch}", f"search_space_file={SPACE_FILE}", "objective=synthetic",
        "scheduler=asha", f"search={UGRO_METHODS[method]}", "tracking=none", "report=false",
        "max_steps=52", "eval_every=1", "n_trials=100000", f"parallel_jobs={WORKERS}",
        f"seed={seed}", f"study_name={name}", "progress_interval_s=100000",
        "max_consecutive_failures=0", *([f"warm_start=[{warm_from}]"] if warm_from else []),
    )  # fmt: skip
    watcher = WorkerClocks(run.clocks, run.workers).watch(
        run.budget, lambda: os.kill(os.getpid(), signal.SIGINT), deadline_s=deadline_s
    )
    result = run_study(
        cfg, run_dir=str(scratch / name), objective=LCBenchObjective(run), echo=False
    )
    WorkerClocks(run.clocks, run.workers).finish()
    watcher.join(timeout=5)
    counts = result.summary.get("counts", {})
    return {"status": result.summary.get("status"), "sampler": result.summary.get("sampler"),
            "trials": counts.get("complete", 0) + counts.get("pruned", 0),
            "warm_start": result.summary.get("warm_start")}  # fmt: skip


def start_peer(method: str, run: Any, seed: int, scratch: Path) -> subprocess.Popen[str]:
    spec = scratch / f"{method}-{run.task}-{seed}.json"
    spec.write_text(json.dumps(asdict(run)))
    python = peer_python(YAHPO_VENV, YAHPO_REQUIREMENTS) if method == "dehb" else PYTHON
    script = PEERS / ("lcbench_dehb.py" if method == "dehb" else "lcbench_optuna.py")
    return subprocess.Popen([python, str(script), str(spec), str(seed)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def regret_curve(traces: Path, bounds: Any, budget: float) -> list[tuple[float, float]]:
    """(simulated time, regret of the best error so far) at every improvement within budget."""
    events = []
    for path in traces.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["sim"] <= budget:
                events.append((event["sim"], event["error"]))
    curve, best = [(0.0, 1.0)], float("inf")
    for at, error in sorted(events):
        if error < best:
            best = error
            curve.append((at, bounds.regret(100.0 - error)))
    return curve


def regret_at(curve: list[tuple[float, float]], at: float) -> float:
    return min(r for t, r in curve if t <= at)


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, r in curve if r <= target + 1e-12), None)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def plot(runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.linspace(0.01, 1.0, 100)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, done in runs.items():  # each run with its own budget (a warm start skips one)
        per_run = [[regret_at(r["curve"], f * r["budget_s"]) for f in grid] for r in done]
        ax.plot(grid, np.median(per_run, axis=0), label=LABELS[method])
    ax.set_yscale("log")
    ax.set_xlabel("simulated wall time (fraction of the budget)")
    ax.set_ylabel("normalised regret (median over tasks and seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="3 tasks, 1 seed: under 5 minutes")
    parser.add_argument("--tasks", help="comma-separated LCBench OpenML task ids")
    parser.add_argument("--seeds", type=int, default=None, help="repetitions (default 2)")
    parser.add_argument("--budget", type=float, default=5.0,
                        help="wall time per run, in the task's median 52-epoch trainings")  # fmt: skip
    parser.add_argument("--time-scale", default="auto",
                        help="real seconds per simulated second, or auto (a median training lasts 2 s)")  # fmt: skip
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--data", default=None, help="YAHPO Gym's data folder")
    parser.add_argument("--check-points", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])
    )
    from lcbench import DEFAULT_TASKS, DataMissing, data_dir

    try:
        data = data_dir(args.data)
    except DataMissing as exc:
        print(f"multi_fidelity: {exc}", file=sys.stderr)
        return 2
    ensure_onnxruntime()
    from lcbench import LCBench

    lc = LCBench(data)
    tasks = (
        args.tasks.split(",") if args.tasks else list(DEFAULT_TASKS[: 3 if args.quick else None])
    )
    try:
        tasks = [lc.check_task(t.strip()) for t in tasks]
    except ValueError as exc:
        print(f"multi_fidelity: {exc}", file=sys.stderr)
        return 2
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 2)))
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in UGRO_METHODS and m not in PEER_METHODS]
    if unknown or BASELINE not in methods:
        print(f"multi_fidelity: --methods: unknown {unknown} or {BASELINE} missing; choose from "
              f"{', '.join([*UGRO_METHODS, *PEER_METHODS])}", file=sys.stderr)  # fmt: skip
        return 2
    load_before = os.getloadavg()
    check = check_surrogate(lc, args.check_points)
    print(f"  surrogate: onnxruntime here vs yahpo-gym {check['yahpo_gym']} on {check['points']} "
          f"points: largest difference {max(check['max_abs_diff'].values()):.3g}", flush=True)  # fmt: skip

    from benchlib import start_ray
    from lcbench_training import RunFiles

    start_ray(num_cpus=WORKERS)
    import logging

    logging.getLogger("ugro_hpo").setLevel(logging.ERROR)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    ours_before: dict[int, str] = {}  # seed -> ours' study on the task before
    budgets: list[float] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for task in tasks:
            training_s = median_training_s(lc, task)
            scale = (
                AUTO_TRAINING_S / training_s
                if args.time_scale == "auto"
                else float(args.time_scale)
            )
            budget = args.budget * training_s
            for seed in seeds:
                budgets.append(budget)
                files: dict[str, RunFiles] = {}
                for method in methods:
                    where = scratch / task / str(seed) / method
                    (where / "traces").mkdir(parents=True)
                    files[method] = RunFiles(task=task, data=str(data), scale=scale,
                                             clocks=str(where / "clocks.json"),
                                             traces=str(where / "traces"), budget=budget,
                                             workers=WORKERS)  # fmt: skip
                deadline = 6 * budget * scale + 120
                peers, watchers, started = {}, [], {}
                from worker_clocks import WorkerClocks

                for method in methods:
                    if method in PEER_METHODS:
                        started[method] = time.time()
                        peers[method] = start_peer(method, files[method], seed, scratch)
                        clocks = WorkerClocks(files[method].clocks, WORKERS)
                        watchers.append(clocks.watch(budget, lambda: None, deadline_s=deadline))
                info: dict[str, dict[str, Any]] = {}
                for method in methods:
                    if method == WARM and seed not in ours_before:
                        continue  # the first task: no earlier study to start from
                    if method in UGRO_METHODS:
                        began = time.time()
                        warm_from = ours_before.get(seed) if method == WARM else None
                        info[method] = run_ugro(method, files[method], seed, scratch, deadline,
                                                warm_from)  # fmt: skip
                        info[method]["wall_s"] = round(time.time() - began, 1)
                if OURS in methods:
                    ours_before[seed] = f"{OURS}-{task}-{seed}"
                for method, process in peers.items():
                    out, err = process.communicate(timeout=deadline + 60)
                    if process.returncode != 0:
                        raise RuntimeError(f"{method} on task {task} failed:\n{err[-3000:]}")
                    info[method] = {**json.loads(out.strip().splitlines()[-1]),
                                    "wall_s": round(time.time() - started[method], 1)}  # fmt: skip
                for watcher in watchers:
                    watcher.join(timeout=5)
                bounds = lc.bounds(task)
                for method in [m for m in methods if m in info]:
                    curve = regret_curve(Path(files[method].traces), bounds, budget)
                    runs[method].append({"task": task, "seed": seed, "budget_s": budget,
                                         "scale": scale, "curve": curve,
                                         "final": curve[-1][1], **info[method]})  # fmt: skip
                line = ", ".join(f"{m} {runs[m][-1]['final']:.4f}" for m in methods if m in info)
                print(f"  task {task} seed {seed}: final regret {line}", flush=True)
    return report(args, tasks, seeds, methods, runs, budgets, check, load_before)


def report(args: argparse.Namespace, tasks: list[str], seeds: list[int], methods: list[str],
           runs: dict[str, list[dict[str, Any]]], budgets: list[float], check: dict[str, Any],
           load_before: tuple[float, float, float]) -> int:  # fmt: skip
    import ray

    ray.shutdown()
    result = Result("multi_fidelity")
    largest = max(check["max_abs_diff"].values())
    result.add(f"surrogate: onnxruntime {check['our_onnxruntime']} here vs yahpo-gym "
               f"{check['yahpo_gym']} (onnxruntime {check['their_onnxruntime']}), {check['points']} points",
               f"largest difference {largest:.3g}", "<= 1e-4", largest <= 1e-4)  # fmt: skip
    summary: dict[str, dict[str, Any]] = {}
    for method in methods:
        times, ratios, finals = [], [], []
        baseline = {(r["task"], r["seed"]): r for r in runs[BASELINE]}
        for mine in runs[method]:  # a warm start has no run on the first task
            base = baseline[(mine["task"], mine["seed"])]
            target = base["final"]
            reached, base_time = time_to(mine["curve"], target), time_to(base["curve"], target)
            mine["time_to_target"] = reached
            times.append(reached if reached is not None else float("inf"))
            ratios.append(
                (reached / base_time) if reached is not None and base_time else float("inf")
            )
            finals.append(mine["final"])
        summary[method] = {
            "median_time_to_target_s": median(times), "median_ratio": median(ratios),
            "reached": sum(t != float("inf") for t in times), "median_final_regret": median(finals),
        }  # fmt: skip
        s = summary[method]
        time_text = (
            "not reached"
            if s["median_time_to_target_s"] == float("inf")
            else (f"{s['median_time_to_target_s']:.0f} s ({s['median_ratio']:.2f}x random+ASHA's)")
        )
        result.add(f"LCBench, {LABELS[method]}: time to random+ASHA's final regret; final regret",
                   f"{time_text}, reached in {s['reached']}/{len(runs[method])}; final {s['median_final_regret']:.4f}")  # fmt: skip
    if WARM in summary and OURS in summary:
        cold = {(r["task"], r["seed"]): r for r in runs[OURS]}
        pairs = [(r, cold[(r["task"], r["seed"])]) for r in runs[WARM]]
        sooner = sum((w["time_to_target"] or float("inf")) < (c["time_to_target"] or float("inf"))
                     for w, c in pairs)  # fmt: skip
        warm_t = median([w["time_to_target"] or float("inf") for w, _ in pairs])
        cold_t = median([c["time_to_target"] or float("inf") for _, c in pairs])
        result.add("warm_start: ours warm-started from the task before vs ours cold, same task runs: "
                   "median time to random+ASHA's final regret; runs where warm was sooner",
                   f"{warm_t:.0f} s vs {cold_t:.0f} s; {sooner}/{len(pairs)}")  # fmt: skip
    ours, verdict = summary.get(OURS), "ours not run"
    if ours is not None:
        result.add("ours: time to random+ASHA's final regret / random+ASHA's (median of runs)",
                   f"{ours['median_ratio']:.2f}", f"<= {TARGET_TIME}", ours["median_ratio"] <= TARGET_TIME)  # fmt: skip
        for peer in PEER_METHODS:
            if peer in summary:
                theirs = summary[peer]["median_final_regret"]
                result.add(f"ours: final regret vs {LABELS[peer]} (medians)",
                           f"{ours['median_final_regret']:.4f} vs {theirs:.4f}", "<= theirs",
                           ours["median_final_regret"] <= theirs)  # fmt: skip
        verdict = (f"ours reaches random+ASHA's final regret in {ours['median_ratio']:.2f}x its time; final regret "
                   + ", ".join(f"{m} {summary[m]['median_final_regret']:.4f}" for m in methods))  # fmt: skip
    latency = ask_latency()
    result.add("search=multi_fidelity: one ask of a 300-trial SQLite study left as ASHA leaves it (20 asks)",
               f"median {statistics.median(latency) * 1000:.0f} ms, slowest {max(latency) * 1000:.0f} ms"
               f" ({'within' if max(latency) <= 0.5 else 'over'} the 500 ms every ask must keep to)")  # fmt: skip
    load_after = os.getloadavg()
    result.add("runs", f"{len(tasks)} tasks x {len(seeds)} seeds, budget {args.budget:g} median trainings per "
               f"worker, time scale {args.time_scale}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")  # fmt: skip
    png = OUT_DIR / "multi_fidelity.png"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    plot({m: runs[m] for m in methods}, png)
    result.details = {"tasks": tasks, "seeds": seeds, "budget": args.budget, "time_scale": args.time_scale,
                      "workers": WORKERS, "surrogate_check": check, "summary": summary, "runs": runs,
                      "load_average": {"before": load_before, "after": load_after},
                      "ask_latency_s": latency,
                      "plot": str(png.relative_to(ROOT))}  # fmt: skip
    return result.finish(verdict)


if __name__ == "__main__":
    sys.exit(main())
