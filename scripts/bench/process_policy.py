"""What each process-level tweak in `ugro_hpo.process_policy` buys, measured in fresh processes.

    .venv/bin/python scripts/bench/process_policy.py [--repeats 5] [--only exit,gc,ahead]

- exit: a process that loaded what a study loads (Ray started and stopped, Optuna, sklearn,
  pandas, torch), from the end of its work to its end: Python's own exit against
  `os._exit` after the exit handlers (`process_policy.exit_without_teardown`), and against
  freezing the collector at exit (`process_policy.skip_collection_at_exit`).
- gc: one full collection in such a process, before and after `gc.freeze()` (what
  `process_policy.freeze_survivors` does in a trial's worker after its first trial).
- ahead: starting a local Ray while the modules a study needs later are imported, one after
  the other against on a thread as a study does it (`process_policy.imports_ahead`), and which
  packages both threads imported modules of while the thread ran (an import hook records the
  thread of every module lookup); that set must be empty.
- release: stopping Ray at a study's end while its summary and plots are written, one after
  the other against Ray's shutdown on a thread (`process_policy.Ahead`), and the packages both
  threads imported from.

Each case runs ``--repeats`` times, interleaved; the median counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

LOADED = """
import logging, time
import ray, optuna, sklearn.ensemble, pandas, torch
ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.WARNING,
         log_to_driver=False)
ray.get(ray.remote(lambda: 1).remote())
ray.shutdown()
"""

EXIT_CASES = {
    "python's exit": "",
    "gc.freeze at exit": "import atexit, gc\natexit.register(gc.freeze)\n",
    "os._exit after the exit handlers": (
        "import atexit, os, sys\natexit.register(lambda: (sys.stdout.flush(), os._exit(0)))\n"
    ),
}

GC_CASE = (
    LOADED
    + """
import gc, json
gc.collect()
t = time.perf_counter(); gc.collect(); before = time.perf_counter() - t
gc.freeze()
t = time.perf_counter(); gc.collect(); after = time.perf_counter() - t
print(json.dumps({"before": before, "after": after}))
"""
)

AHEAD_CASE = """
import importlib, json, logging, sys, threading, time
sys.path.insert(0, {root!r})
import optuna, hydra, omegaconf  # what a study's driver has loaded before Ray starts
from ugro_hpo.pipeline import GP_LIBRARIES, LOADED_WHILE_RAY_STARTS
LATER = LOADED_WHILE_RAY_STARTS + GP_LIBRARIES + ("matplotlib", "matplotlib.figure")

MAIN = threading.get_ident()
overlapping = threading.Event()  # set while the thread imports
seen = {{}}
class Recorder:  # the packages each thread looks modules up in (the main one while overlapping)
    def find_spec(self, name, path=None, target=None):
        if threading.get_ident() != MAIN or overlapping.is_set():
            seen.setdefault(name.split(".")[0], set()).add(threading.get_ident())
        return None
sys.meta_path.insert(0, Recorder())

def later():
    overlapping.set()
    try:
        for name in LATER:
            importlib.import_module(name)
    finally:
        overlapping.clear()

def start_ray():
    import ray
    ray.init(address="local", num_cpus=1, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=False)

t = time.perf_counter()
if {overlap}:  # as the study does it (pipeline.run)
    from ugro_hpo.process_policy import imports_ahead
    ahead = imports_ahead(later, first=["ugro_hpo.execution.ray_compat"])
    start_ray()
    ahead.result()
else:
    importlib.import_module("ugro_hpo.execution.ray_compat")  # Ray Tune's search module
    start_ray()
    later()
wall = time.perf_counter() - t
import ray
ray.shutdown()
both = sorted(n for n, threads in seen.items() if len(threads) > 1)
print(json.dumps({{"wall": wall, "both": both}}))
"""


RELEASE_CASE = """
import importlib, json, logging, sys, tempfile, threading, time
sys.path.insert(0, {root!r})
import optuna, ray
ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.WARNING,
         log_to_driver=False)
ray.get(ray.remote(lambda: 1).remote())

seen = {{}}
class Recorder:  # the packages each thread looks modules up in
    def find_spec(self, name, path=None, target=None):
        seen.setdefault(name.split(".")[0], set()).add(threading.get_ident())
        return None
sys.meta_path.insert(0, Recorder())

def finish():  # what a study's end does besides stopping Ray: its modules, a report's plots
    for name in ("ugro_hpo.results.summary", "ugro_hpo.results.writers",
                 "ugro_hpo.results.report", "ugro_hpo.results.importances"):
        importlib.import_module(name)
    from ugro_hpo.results.plots import figure
    with tempfile.TemporaryDirectory() as out:
        for i in range(4):
            fig = figure(6, 4)
            fig.add_subplot().plot(range(100), [x * x for x in range(100)])
            fig.savefig(f"{{out}}/{{i}}.png")

t = time.perf_counter()
if {overlap}:
    from ugro_hpo.process_policy import Ahead
    released = Ahead(ray.shutdown)
    finish()
    released.result()
else:
    ray.shutdown()
    finish()
wall = time.perf_counter() - t
both = sorted(n for n, threads in seen.items() if len(threads) > 1)
print(json.dumps({{"wall": wall, "both": both}}))
"""


def _exit_seconds(prelude: str) -> float:
    """Seconds from the end of the child's work to its end, as the parent sees them."""
    code = prelude + LOADED + "print(time.time(), flush=True)\n"
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    ended = time.time()
    return ended - float(done.stdout.strip().splitlines()[-1])


def _json(code: str) -> dict:
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="exit,gc,ahead,release")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "exit" in only:
        times: dict[str, list[float]] = {name: [] for name in EXIT_CASES}
        for _ in range(args.repeats):
            for name, prelude in EXIT_CASES.items():
                times[name].append(_exit_seconds(prelude))
        print("exit (from the end of the work to the process's end, median s):")
        for name, values in times.items():
            print(
                f"  {name:34} {statistics.median(values):.2f}  ({' '.join(f'{v:.2f}' for v in values)})"
            )
    if "gc" in only:
        runs = [_json(GC_CASE) for _ in range(args.repeats)]
        before = statistics.median(r["before"] for r in runs) * 1000
        after = statistics.median(r["after"] for r in runs) * 1000
        print(f"gc: a full collection {before:.0f} ms, after gc.freeze() {after:.1f} ms (median)")
    if "ahead" in only:
        walls: dict[bool, list[float]] = {False: [], True: []}
        both: set[str] = set()
        for _ in range(args.repeats):
            for overlap in (False, True):
                found = _json(AHEAD_CASE.format(root=str(ROOT), overlap=overlap))
                walls[overlap].append(found["wall"])
                if overlap:
                    both.update(found["both"])
        print(
            f"ahead: Ray's start then the imports {statistics.median(walls[False]):.2f} s, "
            f"the imports on a thread meanwhile {statistics.median(walls[True]):.2f} s (median)"
        )
        print(f"  packages both threads imported from: {sorted(both) or 'none'}")

    if "release" in only:
        walls = {False: [], True: []}
        both = set()
        for _ in range(args.repeats):
            for overlap in (False, True):
                found = _json(RELEASE_CASE.format(root=str(ROOT), overlap=overlap))
                walls[overlap].append(found["wall"])
                if overlap:
                    both.update(found["both"])
        print(
            f"release: Ray's shutdown then the study's end {statistics.median(walls[False]):.2f} s, "
            f"the shutdown on a thread meanwhile {statistics.median(walls[True]):.2f} s (median)"
        )
        print(f"  packages both threads imported from: {sorted(both) or 'none'}")


if __name__ == "__main__":
    main()
