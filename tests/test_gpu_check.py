"""scripts/gpu-check without a GPU: its dry run, the figures it draws from nvidia-smi, and the
rule that `-m gpu` on a machine without CUDA fails instead of passing green."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, gpu_tests_asked, why_no_cuda

SCRIPT = REPO / "scripts" / "gpu-check"
CHECKS = ("environment", "tiny_model", "gpu_tests", "four_trials_share_gpu", "memory_returns",
          "four_bit", "throughput_vs_bare_peft", "trials_per_hour")  # fmt: skip
LORA_TESTS = "tests/lora/test_lora_objective.py"


def _observe():
    """scripts/gpu/observe.py (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_observe", REPO / "scripts/gpu/observe.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


observe = _observe()


def _gpu_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,  # several CLI dry runs and a test collection, on two busy cores
        env={**os.environ, "PYTHON": sys.executable},
    )


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


# -- the dry run --------------------------------------------------------------------------------


@pytest.mark.slow  # ten dry runs and a collection of the whole suite: about 15-30 s
def test_the_dry_run_names_every_check_and_passes_without_a_gpu(tmp_path: Path) -> None:
    done = _gpu_check("--dry-run", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in CHECKS:
        assert f"  {name} (up to " in done.stdout
    record = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert record["dry_run"] and record["passed"]
    statuses = {c["name"]: c["status"] for c in record["checks"]}
    assert statuses["collect gpu tests"] == "PASS"
    assert {
        statuses[f"compose {key}"] for key in ("gpu4", "memory", "four_bit", "gpu1", "gpu2")
    } == {"PASS"}


def test_a_wheels_folder_that_is_not_there_is_a_one_line_error(tmp_path: Path) -> None:
    done = _gpu_check("--dry-run", "--wheels", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("missing: not a directory")


# -- `-m gpu` without CUDA ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markexpr", "asked"),
    [
        ("gpu", True),
        ("gpu and not slow", True),
        ("slow or gpu", True),
        ("not slow and not gpu", False),
        ("not gpu", False),
        ("not (gpu or slow)", False),
        ("", False),
        ("gpus", False),
    ],
)
def test_which_mark_expressions_ask_for_gpu_tests(markexpr: str, asked: bool) -> None:
    assert gpu_tests_asked(markexpr) is asked


def test_asking_for_gpu_tests_without_cuda_fails_loudly() -> None:
    if why_no_cuda() is None:
        pytest.skip("this machine has CUDA: -m gpu would run the real tests")
    done = _pytest("-m", "gpu", LORA_TESTS)
    assert done.returncode == 1, done.stdout
    assert "-m gpu asked but CUDA is not available: " in done.stdout
    assert " passed" not in done.stdout and " skipped" not in done.stdout


def test_a_gpu_test_that_merely_comes_along_skips_without_cuda() -> None:
    if why_no_cuda() is None:
        pytest.skip("this machine has CUDA: the test would run")
    done = _pytest("-m", "", f"{LORA_TESTS}::test_lora_step_on_cuda", "-rs")
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout and "needs a CUDA device" in done.stdout


# -- what gpu-check reads from nvidia-smi -------------------------------------------------------


def test_nvidia_smi_rows_are_parsed_and_notices_ignored() -> None:
    text = "1234, GPU-a, 812\n5678, GPU-a, [N/A]\nNo running processes found\n"
    apps = observe.parse(text)
    assert [(a.pid, a.gpu, a.used_mib) for a in apps] == [
        (1234, "GPU-a", 812.0),
        (5678, "GPU-a", None),
    ]


def test_processes_on_one_gpu_count_only_the_study() -> None:
    app = observe.App
    samples = [
        observe.Sample(0.0, (app(1, "GPU-a", 10), app(2, "GPU-a", 10), app(3, "GPU-b", 10))),
        observe.Sample(1.0, (app(1, "GPU-a", 10), app(2, "GPU-a", 10), app(4, "GPU-a", 10))),
    ]
    assert observe.most_on_one_gpu(samples, before={1}) == (2, "GPU-a")
    assert observe.study_pids(samples, before={1}) == {2, 3, 4}


def _worker(lows: list[float]) -> list[tuple[float, float]]:
    """A worker's memory: each trial (1 s) loads at its low level, then trains 300 MiB higher."""
    series = []
    for i, low in enumerate(lows):
        series += [(i + 0.05, low), (i + 0.5, low + 300), (i + 0.9, low + 300)]
    return series


def test_memory_that_returns_after_each_trial_shows_no_growth() -> None:
    lows = [500.0] + [820.0] * 19  # the first trial starts CUDA
    troughs = observe.troughs(_worker(lows), [float(i) for i in range(20)], 20.0)
    assert troughs == lows
    assert observe.growth(troughs)["max_growth_mib"] == 0


def test_a_leak_shows_as_growth_and_one_missed_low_phase_does_not() -> None:
    leaking = observe.troughs(_worker([500.0] + [820.0 + 10 * i for i in range(19)]),
                              [float(i) for i in range(20)], 20.0)  # fmt: skip
    assert observe.growth(leaking)["growth_mib"] == 160
    missed = [500.0] + [820.0] * 19
    missed[9] += 300  # the sampler missed trial 10's loading phase
    assert observe.growth(missed)["max_growth_mib"] == 0


def test_trials_at_once_and_per_hour() -> None:
    assert observe.most_overlapping([(0, 4), (1, 5), (2, 6), (3, 7), (4, 8)]) == 4
    assert observe.per_hour(8, 40.0) == 720


def test_only_a_two_gpu_test_on_a_smaller_machine_is_a_skip_that_passes(tmp_path: Path) -> None:
    """gpu_tests reads pytest's own JUnit report: a test that needs two GPUs is not
    applicable on a machine with one; any other skip still counts as a failure."""
    (tmp_path / "test_some.py").write_text(
        "import pytest\n"
        "def test_runs():\n    pass\n"
        "def test_group():\n    pytest.skip('needs 2 CUDA devices; this machine has 1')\n"
        "def test_missing():\n    pytest.skip('needs a CUDA device: none')\n"
    )
    report = tmp_path / "report.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={report}", str(tmp_path / "test_some.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout
    cases = observe.junit_cases(report)
    assert {n: c["outcome"] for n, c in cases.items()} == {
        "test_runs": "passed", "test_group": "skipped", "test_missing": "skipped"
    }  # fmt: skip
    assert observe.skipped_for(cases, "needs 2 CUDA devices") == {"test_group"}
