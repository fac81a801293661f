"""What nvidia-smi shows while a study runs, and the figures gpu-check draws from it.

Standard library only: gpu-check's driver runs on the system Python before (and apart from)
the project's venv. The GPU is observed from outside, as an operator would see it, because
the question is what the trials really did on the device, not what they believe they did.
"""

from __future__ import annotations

import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

QUERY = (
    "nvidia-smi",
    "--query-compute-apps=pid,gpu_uuid,used_memory",
    "--format=csv,noheader,nounits",
)


@dataclass(frozen=True)
class App:
    """One process holding a CUDA context: its pid, its GPU and the memory it holds (MiB;
    None where the driver does not say, e.g. "[N/A]" in some containers)."""

    pid: int
    gpu: str
    used_mib: float | None


@dataclass(frozen=True)
class Sample:
    t: float  # time.time() in the middle of the nvidia-smi call
    apps: tuple[App, ...]


def parse(text: str) -> tuple[App, ...]:
    """The processes in nvidia-smi's CSV; lines that are not "pid, uuid, MiB" are skipped
    (nvidia-smi prints a notice instead of rows on some drivers when nothing runs)."""
    apps = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        try:
            used: float | None = float(parts[2])
        except ValueError:
            used = None
        apps.append(App(int(parts[0]), parts[1], used))
    return tuple(apps)


@dataclass
class GpuSampler:
    """Runs nvidia-smi every ``interval_s`` in a thread while the ``with`` block runs."""

    interval_s: float = 0.25
    command: tuple[str, ...] = QUERY
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> GpuSampler:
        self.samples.append(self.sample_once())  # what was there before: not the study's
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def before(self) -> set[int]:
        """Processes that held the GPU before the study started (never counted as trials)."""
        return {app.pid for app in self.samples[0].apps} if self.samples else set()

    def sample_once(self) -> Sample:
        started = time.time()
        try:
            done = subprocess.run(self.command, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.errors.append(f"{' '.join(self.command[:1])}: {exc}")
            return Sample(started, ())
        if done.returncode != 0:
            self.errors.append((done.stderr or done.stdout).strip()[:200] or "nvidia-smi failed")
        return Sample((started + time.time()) / 2, parse(done.stdout))

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            self.samples.append(self.sample_once())
            self._stop.wait(max(0.0, self.interval_s - (time.time() - started)))


def study_pids(samples: list[Sample], before: set[int]) -> set[int]:
    """Processes that held a CUDA context during the study and not before it."""
    return {app.pid for s in samples for app in s.apps} - before


def most_on_one_gpu(samples: list[Sample], before: set[int]) -> tuple[int, str | None]:
    """The most distinct study processes seen on one GPU in a single sample, and that GPU."""
    best: tuple[int, str | None] = (0, None)
    for sample in samples:
        by_gpu: dict[str, set[int]] = {}
        for app in sample.apps:
            if app.pid not in before:
                by_gpu.setdefault(app.gpu, set()).add(app.pid)
        for gpu, pids in by_gpu.items():
            if len(pids) > best[0]:
                best = (len(pids), gpu)
    return best


def memory_of(samples: list[Sample], pid: int) -> list[tuple[float, float]]:
    """(time, MiB) of one process, in the samples where it appears with a figure."""
    return [
        (s.t, app.used_mib)
        for s in samples
        for app in s.apps
        if app.pid == pid and app.used_mib is not None
    ]


def troughs(
    series: list[tuple[float, float]], starts: list[float], end: float
) -> list[float | None]:
    """The lowest memory seen in each trial's window (its start to the next one's; the last
    ends at ``end``): what a reused worker holds between trials, plus the trial's low phase
    (loading the model). None where no sample fell in the window."""
    bounds = [*starts[1:], end]
    lows: list[float | None] = []
    for start, stop in zip(starts, bounds, strict=True):
        inside = [mib for t, mib in series if start <= t < stop]
        lows.append(min(inside) if inside else None)
    return lows


def growth(lows: list[float | None], warmup: int = 1, window: int = 3) -> dict[str, float]:
    """How far the troughs rise after the warm-up trials (the first trial creates the CUDA
    context and cuBLAS workspaces, which stay). A leak raises every later trough, so each
    point is the lowest of ``window`` neighbouring troughs: one sample that missed a trial's
    low phase cannot pass for growth."""
    kept = [low for low in lows[warmup:] if low is not None]
    if len(kept) < window:
        raise ValueError(f"only {len(kept)} trials had a memory sample after the warm-up")
    smoothed = [min(kept[i : i + window]) for i in range(len(kept) - window + 1)]
    first, last = smoothed[0], smoothed[-1]
    return {
        "first_mib": first,
        "last_mib": last,
        "growth_mib": last - first,
        "max_growth_mib": max(smoothed) - first,
    }


def most_overlapping(intervals: list[tuple[float, float]]) -> int:
    """The most intervals (start, end) open at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in events:  # an end sorts before a start at the same instant (-1 < 1)
        current += step
        most = max(most, current)
    return most


def per_hour(trials: int, seconds: float) -> float:
    return trials / seconds * 3600 if seconds > 0 else 0.0


def junit_cases(report: Path) -> dict[str, dict[str, str]]:
    """Each test of a pytest JUnit XML report: passed, failure, error or skipped, and why."""
    cases = {}
    for case in ET.parse(report).iter("testcase"):
        ended = [child for child in case if child.tag in ("failure", "error", "skipped")]
        cases[case.get("name", "?")] = {
            "outcome": ended[0].tag if ended else "passed",
            "message": ended[0].get("message", "")[:200] if ended else "",
        }
    return cases


def skipped_for(cases: dict[str, dict[str, str]], reason: str) -> set[str]:
    """The tests skipped with ``reason`` in their message."""
    return {n for n, c in cases.items() if c["outcome"] == "skipped" and reason in c["message"]}
