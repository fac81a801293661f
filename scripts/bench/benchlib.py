"""What every benchmark here shares: where results go, how a verdict reads, how peers are run.

Each benchmark writes ``outputs/bench/<name>.json`` with the same outline (``rows`` of
measure / value / target / pass, a one-line ``verdict``, the machine) so ``scripts/bench/all``
can put them in one table, and prints the verdict line.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STARTED = time.time()  # about when this benchmark's process started
ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "outputs" / "bench"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
# Hydra's Optuna sweeper pins optuna < 3, which cannot live beside ours: it gets its own venv.
# A fresh install resolves to a hydra-core release candidate that crashes, hence the pin.
HYDRA_VENV = ROOT / ".venv-bench-hydra"
HYDRA_REQUIREMENTS = ("hydra-core==1.3.2", "hydra-optuna-sweeper==1.3.0")
# The next line of the Optuna sweeper (release candidates for Hydra 1.4, Optuna >= 4.9): a venv
# of its own, on the Optuna ours runs.
HYDRA_RC_VENV = ROOT / ".venv-bench-hydra-rc"
HYDRA_RC_REQUIREMENTS = ("hydra-core==1.4.0rc3", "hydra-optuna-sweeper==1.4.0rc3",
                         "hydra-joblib-launcher==1.4.0rc3", "optuna==5.0.0")  # fmt: skip


def machine() -> dict[str, Any]:
    """The machine a figure came from (figures from different machines do not compare)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        gpu = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "gpu": gpu,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


@dataclass
class Row:
    """One figure: what was measured, its value (with unit), the target, and whether it is met
    (None: the row is for information and has no target)."""

    measure: str
    value: str
    target: str = ""
    passed: bool | None = None


@dataclass
class Result:
    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = _STARTED

    def add(self, measure: str, value: str, target: str = "", passed: bool | None = None) -> None:
        self.rows.append(Row(measure, value, target, passed))

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.rows)

    def finish(self, summary: str) -> int:
        """Write the JSON, print the one-line verdict; the exit code says whether targets hold."""
        verdict = f"{self.name}: {summary} -> {'PASS' if self.passed else 'FAIL'}"
        data = {
            "benchmark": self.name,
            "verdict": verdict,
            "passed": self.passed,
            "rows": [vars(r) for r in self.rows],
            "wall_s": round(time.time() - self.started, 1),
            "machine": machine(),
            "details": self.details,
        }
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUT_DIR / f"{self.name}.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        print(f"{verdict} ({path.relative_to(ROOT)})", flush=True)
        return 0 if self.passed else 1


class PeakRSS:
    """Samples a process's resident memory in the background; ``peak_mb`` is the highest seen."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak_mb = 0.0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self._process.memory_info().rss
            except Exception:  # the process ended
                return
            self.peak_mb = max(self.peak_mb, rss / 2**20)
            self._stop.wait(self._interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


@dataclass
class Timed:
    wall_s: float
    peak_rss_mb: float
    stdout: str


def run_timed(command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> Timed:
    """Run a command to its end: wall time from start to exit, and its own peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rss = PeakRSS(process.pid)
    out, _ = process.communicate()
    wall = time.perf_counter() - started
    peak = rss.stop()
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:4])}... exited {process.returncode}:\n{out[-3000:]}"
        )
    return Timed(wall, peak, out)


def peer_python(venv: Path, requirements: Sequence[str]) -> str:
    """The interpreter of a peer's own venv holding ``requirements``, made on first use (and
    made again when they change) from $PYTHON, or else the interpreter behind .venv."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = " ".join(requirements)
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        base = os.environ.get("PYTHON", PYTHON)
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
        pip_install(str(python), requirements)
        stamp.write_text(wanted)
    return str(python)


def pip_install(python: str, requirements: Sequence[str]) -> None:
    """Install ``requirements`` into the venv of ``python`` from pip's configured index."""
    done = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"installing {' '.join(requirements)} failed:\n{done.stderr[-2000:]}")


def installed_versions(python: str, names: Sequence[str]) -> dict[str, str | None]:
    """The versions of the distributions ``names`` in the venv of ``python`` (None: absent)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def version(name):\n"
        "    try:\n        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n        return None\n"
        "print(json.dumps({n: version(n) for n in sys.argv[1:]}))"
    )
    done = subprocess.run([python, "-c", code, *names], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def hydra_python() -> str:
    """The interpreter of the Hydra-sweeper venv, created on first use (about 15 s)."""
    return peer_python(HYDRA_VENV, HYDRA_REQUIREMENTS)


def start_ray(num_cpus: int) -> None:
    """One local Ray for every study this benchmark runs in-process."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
