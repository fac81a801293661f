"""Running a fixture Hydra app as a user runs it (`python app.py -m ...`), for the sweeper's
tests: its trials on the session's Ray unless a test gives the sweep a Ray of its own."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

APPS = Path(__file__).resolve().parents[1] / "fixtures" / "hydra_apps"


def sweep_command(app: str, sweep_dir: Path, ray_address: str | None, *overrides: str) -> list[str]:
    """``app`` is a fixture's name, or ``name:config`` for another of its configs."""
    app, _, config = app.partition(":")
    ray = [f"hydra.sweeper.ray.address={ray_address}"] if ray_address else []
    name = [f"--config-name={config}"] if config else []  # options before the overrides
    return [sys.executable, str(APPS / f"{app}.py"), *name, "-m", f"hydra.sweep.dir={sweep_dir}",
            *ray, *overrides]  # fmt: skip


def run_sweep(
    app: str,
    tmp_path: Path,
    ray_address: str | None,
    *overrides: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """The sweep's command to its end, in ``tmp_path``, its sweep directory ``tmp_path/sweep``."""
    return subprocess.run(
        sweep_command(app, tmp_path / "sweep", ray_address, *overrides),
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def trial_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "trials.csv", newline="") as file:
        return list(csv.DictReader(file))


def error_lines(stderr: str) -> list[str]:
    """stderr without the lines the trials' output adds (``[trial N] ...``)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[trial ")]
