"""Memory of a LoRA trial against the bare peft loop doing the same training.

    .venv/bin/python scripts/bench/trial_memory.py [--steps 60]

The bare loop (lora_throughput.bare_loop: the default trial's adapters, batch 16, AdamW)
runs in a process of its own, which reports its peak RSS. Then the default study runs its
first trial (the search space's defaults: the same adapters and batch) under Ray, and the
peak RSS of the worker process that ran it is sampled every 50 ms. For scale, a third process
runs the bare loop as a plain Ray Tune function trainable, so what Ray's worker itself costs
shows apart from what ugro_hpo adds. Target: the trial within 10% of the bare loop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import PYTHON, ROOT, Result

TARGET = 0.10
BATCH_SIZE = 16


def bare(steps: int) -> float:
    """The bare loop in this process; returns this process's peak RSS in MB."""
    import torch
    from lora_throughput import bare_loop, fresh_model, load_objective

    torch.set_num_threads(1)  # a trial's resources.cpu
    objective = load_objective()
    _, tokenizer = objective.model.load("cpu")
    blocks = objective.dataset.blocks(tokenizer)
    bare_loop(fresh_model(objective), blocks, BATCH_SIZE, steps, 5e-4)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_in_ray(steps: int) -> None:
    """The bare loop as a plain Ray Tune trial; the trial reports its worker's peak RSS."""
    import ray
    from ray import tune

    def trainable(config: dict) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        tune.report({"peak_rss_mb": bare(config["steps"])})

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as scratch:
        results = tune.Tuner(
            trainable, param_space={"steps": steps}, run_config=tune.RunConfig(storage_path=scratch)
        ).fit()
    print(json.dumps({"peak_rss_mb": results[0].metrics["peak_rss_mb"]}))


class WorkerPeak:
    """Peak RSS of the Ray worker processes (descendants of this one) that ran a trainable."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self.peak: dict[int, float] = {}
        self.trainables: set[int] = set()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for child in self._me.children(recursive=True):
                try:
                    if "ImplicitFunc" in " ".join(child.cmdline()):
                        self.trainables.add(child.pid)
                    rss = child.memory_info().rss / 2**20
                except Exception:  # ended between listing and reading
                    continue
                self.peak[child.pid] = max(self.peak.get(child.pid, 0.0), rss)
            self._stop.wait(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak[pid] for pid in self.trainables)


def ugro_trial(steps: int) -> float:
    from benchlib import start_ray

    from ugro_hpo import compose, run

    start_ray(1)
    watch = WorkerPeak()
    with tempfile.TemporaryDirectory() as scratch:
        cfg = compose(
            f"outputs_dir={scratch}", f"model.cache_dir={ROOT / 'outputs' / 'models'}",
            "scheduler=fifo", "tracking=none", "report=false", "n_trials=1", "parallel_jobs=1",
            f"max_steps={steps}", "study_name=trial-memory",
        )  # fmt: skip
        result = run(cfg, run_dir=f"{scratch}/run", echo=False)
    time.sleep(0.2)
    assert result.summary["best"]["params"]["batch_size"] == BATCH_SIZE, result.summary["best"]
    return watch.stop()


def measured(*args: str) -> float:
    out = subprocess.run(
        [PYTHON, __file__, *args], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--part", choices=["bare", "bare-in-ray", "trial"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "bare":
        print(json.dumps({"peak_rss_mb": bare(args.steps)}))
        return 0
    if args.part == "bare-in-ray":
        bare_in_ray(args.steps)
        return 0
    if args.part == "trial":
        print(json.dumps({"peak_rss_mb": ugro_trial(args.steps)}))
        return 0
    steps = str(args.steps)
    loop = measured("--part", "bare", "--steps", steps)
    in_ray = measured("--part", "bare-in-ray", "--steps", steps)
    trial = measured("--part", "trial", "--steps", steps)
    over = trial / loop - 1
    result = Result("trial_memory")
    result.add("peak RSS, LoRA trial vs bare peft loop", f"{trial:.0f} vs {loop:.0f} MB ({over:+.0%})",
               f"<= +{TARGET:.0%}", over <= TARGET)  # fmt: skip
    result.add("peak RSS, the bare loop as a plain Ray Tune trial (Ray's worker)",
               f"{in_ray:.0f} MB ({in_ray / loop - 1:+.0%} over the bare loop)")  # fmt: skip
    result.add("peak RSS, LoRA trial vs that plain Ray Tune trial (what ugro_hpo adds)",
               f"{trial / in_ray - 1:+.0%}")  # fmt: skip
    result.details = {"steps": args.steps, "batch_size": BATCH_SIZE, "bare_loop_mb": loop,
                      "bare_loop_in_ray_mb": in_ray, "ugro_trial_mb": trial}  # fmt: skip
    return result.finish(
        f"LoRA trial {trial:.0f} MB vs bare loop {loop:.0f} MB ({over:+.0%}); "
        f"the bare loop as a plain Ray Tune trial {in_ray:.0f} MB"
    )


if __name__ == "__main__":
    sys.exit(main())
