"""A study killed with kill -9 while a trial is past step 10, then rerun: the interrupted
trial's parameters continue from its last checkpoint and end where an uninterrupted run of
the same parameters ends."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

pytestmark = pytest.mark.integration

# Both runs train on the same device, and the resumed one puts back torch's (CPU and CUDA),
# Python's and NumPy's generators and the batch stream's position. On the CPU, with the same
# thread count, the eval losses agree to float32 rounding (measured: identical). On a GPU,
# CUDA's atomic adds (the embedding's backward) do not promise the same sums from run to run,
# so the tolerance is wider there.
TOLERANCE = {"cpu": 1e-5, "gpu": 1e-3}
STEPS = 60


def _study(name: str, ray_address: str, lora_overrides: list[str], device: str) -> list[str]:
    return [*lora_overrides, f"resources.gpu={1 if device == 'gpu' else 0}", f"study_name={name}",
            f"ray.address={ray_address}", "n_trials=1",
            "parallel_jobs=1", f"max_steps={STEPS}", "eval_every=5", "objective.checkpoint_every=5",
            "dataset.seq_len=64", "scheduler=fifo", "report=false"]  # fmt: skip


def _checkpoint_steps(ray_dir: Path) -> list[int]:
    """Steps of the checkpoints Ray Tune has stored for the study (the files themselves)."""
    steps = []
    for state in ray_dir.glob("*/trial_*/checkpoint_*/state.json"):
        try:
            steps.append(int(json.loads(state.read_text())["step"]))
        except (OSError, ValueError, KeyError):
            continue  # being written
    return steps


def _recorded_step(db: Path) -> int:
    """The step of the checkpoint the driver has recorded on the running trial (0: none)."""
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "select value_json from trial_user_attributes where key = 'checkpoint'"
            ).fetchall()
    except sqlite3.Error:
        return 0
    return max((int(json.loads(v)["step"]) for (v,) in rows), default=0)


def _trials_csv(tmp_path: Path, name: str) -> list[dict[str, str]]:
    (path,) = (tmp_path / "outputs" / name).glob("*/trials.csv")
    with path.open() as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_a_killed_trial_continues_from_its_checkpoint_on_the_rerun(
    tmp_path: Path, ray_address: str, lora_overrides: list[str], device: str
) -> None:
    args = _study("crash", ray_address, lora_overrides, device)
    db = tmp_path / "outputs" / "studies.db"
    ray_dir = tmp_path / "outputs" / "ray" / "crash"
    driver = subprocess.Popen([sys.executable, "-m", "ugro_hpo", *args], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 300
        # The event: a checkpoint for step >= 10 is on storage and recorded in the study.
        while not (max(_checkpoint_steps(ray_dir), default=0) >= 10 and _recorded_step(db) >= 10):
            assert driver.poll() is None, driver.stderr.read()[-3000:] if driver.stderr else ""
            assert time.time() < deadline, "no checkpoint at step 10 or later"
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver's group: only what this test started
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    recorded = _recorded_step(db)
    assert 10 <= recorded < STEPS  # killed mid-trial

    rerun = run_cli(*args, cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = _trials_csv(tmp_path, "crash")
    retry = next(r for r in rows if r["state"] == "complete")
    interrupted = next(r for r in rows if r["state"] == "failed")
    assert int(retry["resumed_from_step"]) >= 10 and int(retry["resumed_from_step"]) == recorded
    assert interrupted["resumed_from_step"] == ""
    assert retry["lora_r"] == interrupted["lora_r"]  # the same parameters
    (summary_path,) = (tmp_path / "outputs" / "crash").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["resumed_from_step"] == {retry["number"]: recorded}

    straight = run_cli(
        *_study("straight", ray_address, lora_overrides, device), cwd=tmp_path, timeout=600
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    (uninterrupted,) = _trials_csv(tmp_path, "straight")
    assert uninterrupted["lora_r"] == retry["lora_r"]
    assert float(retry["eval_loss"]) == pytest.approx(float(uninterrupted["eval_loss"]),
                                                      abs=TOLERANCE[device])  # fmt: skip
    print("resumed from step", recorded, "eval_loss", retry["eval_loss"], "uninterrupted",
          uninterrupted["eval_loss"])  # fmt: skip
