"""Costs the machinery keeps off every trial and every study start (scripts/bench/overhead.py
measures them; these tests keep them from coming back)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import QUICK


def python_prints(code: str) -> list[str]:
    """The lines ``code`` prints in a fresh interpreter (process-wide state such as the
    collector's frozen generation or the modules loaded starts clean), which must succeed."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()


def test_release_memory_freezes_once_and_still_collects_each_trials_cycles() -> None:
    # A fresh interpreter: the collector's frozen generation is process-wide state.
    code = """
import gc, weakref
from ugro_hpo.execution.trainable import release_memory

class Node:
    pass

def trial():
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    return weakref.ref(a)

assert gc.get_freeze_count() == 0
first = trial()
release_memory()
frozen = gc.get_freeze_count()
assert first() is None and frozen > 0
second = trial()
release_memory()
assert second() is None, "a later trial's garbage must still be collected"
assert gc.get_freeze_count() == frozen, "only the first trial freezes what survived"
"""
    python_prints(code)


def test_a_trial_s_worker_imports_no_optuna() -> None:
    """The trainable and the Hydra sweeper's job are what a worker imports before its first
    trial; Optuna (the driver's business) would add about 0.2 s to that trial."""
    code = (
        "import sys\n"
        "import ugro_hpo.execution.trainable, ugro_hpo.sweeper.job\n"
        "print(sorted(m for m in ('optuna', 'ugro_hpo.config.plan') if m in sys.modules))\n"
    )
    assert python_prints(code) == ["[]"]


@pytest.mark.slow
def test_a_command_lets_go_of_the_ray_it_joined_before_writing_results(
    ray_address: str, tmp_path
) -> None:
    """A command that exits after its study ends Ray while the summary and report are
    written (its processes take 1-2 s to stop); a Ray the process used before is kept."""
    code = (
        "import ray\n"
        "from ugro_hpo import compose\n"
        "from ugro_hpo.pipeline import run\n"
        "def study(name):\n"
        f"    return compose(*{QUICK!r}, 'n_trials=2', 'outputs_dir={tmp_path}', "
        f"'ray.address={ray_address}', 'study_name=' + name)\n"
        "assert run(study('first'), echo=False, release_ray=True).status == 'complete'\n"
        "print('after a study that joined Ray:', ray.is_initialized())\n"
        f"ray.init(address={ray_address!r})\n"
        "assert run(study('second'), echo=False, release_ray=True).status == 'complete'\n"
        "print('after a study in a process that used Ray before:', ray.is_initialized())\n"
    )
    assert python_prints(code)[-2:] == [
        "after a study that joined Ray: False",
        "after a study in a process that used Ray before: True",
    ]


@pytest.mark.slow
def test_a_study_gives_ray_no_callbacks_so_ray_imports_none_of_its_tracker_integrations(
    ray_address: str, tmp_path
) -> None:
    """The driver hears of trials through its searcher and stops the run through a stopper, so
    Ray gets no callbacks of ours; with callbacks, its telemetry would import its Comet, Aim,
    MLflow and W&B integrations to count them by class (about a second per study)."""
    code = (
        "import sys\n"
        "from ugro_hpo import compose, run\n"
        f"cfg = compose(*{QUICK!r}, 'n_trials=2', 'outputs_dir={tmp_path}', 'ray.address={ray_address}')\n"
        "assert run(cfg, echo=False).status == 'complete'\n"
        "print(sorted(m for m in sys.modules if m.startswith('ray.air.integrations')))\n"
    )
    assert python_prints(code)[-1] == "[]"


def test_a_trial_the_scheduler_stops_frees_its_objects_before_memory_is_released() -> None:
    # Ray stops a trial by raising SystemExit(0) from tune.report; its traceback holds the
    # objective's frames (a LoRA trial's model and optimizer) while the trainable cleans up.
    code = """
import sys, weakref
from ray import tune
from ugro_hpo.execution import trainable
from ugro_hpo.objectives.base import Objective
from ugro_hpo.security.digests import SecretDigests

class Model:
    pass

refs, freed_at_release = [], []

class Holding(Objective):
    def __call__(self, params, report, context):
        model = Model()  # held only by this frame
        refs.append(weakref.ref(model))
        report(1, loss=1.0)
        return {"loss": 1.0}

def stopped(metrics):
    raise SystemExit(0)  # what Ray's session does when the scheduler stops the trial

real_release = trainable.release_memory
def release():
    real_release()
    freed_at_release.append(refs[0]() is None)

tune.report, trainable.release_memory = stopped, release
spec = {"objective": Holding(), "metrics": ["loss"], "seed": 0, "max_steps": 2, "eval_every": 1,
        "resources": {"cpu": 1, "gpu": 0}, "run_dir": ".", "metadata": {}, "trial_timeout_s": None,
        "secret_digests": SecretDigests.of_known()}
try:
    trainable.run_trial({}, spec)
except SystemExit:
    pass
print(freed_at_release)
"""
    assert python_prints(code)[-1] == "[True]"
