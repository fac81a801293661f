"""A trial's Hydra job inside a reused Ray worker: the sweep's Hydra state is taken on once."""

from __future__ import annotations

import pytest
from hydra.core.singleton import Singleton
from ray import cloudpickle  # how Ray sends the job to its workers

from ugro_hpo.sweeper import job as job_module
from ugro_hpo.sweeper.job import HydraJob
from ugro_hpo.sweeper.params import SweepSpace


def task(cfg: object) -> float:
    return 0.0


def test_a_worker_takes_on_a_sweep_s_hydra_state_once_for_all_its_trials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each trial unpickles its own copy of the job; entering Hydra again for each rescans
    every installed plugin, so copies of one sweep must count as one."""
    entered: list[object] = []
    set_state = Singleton.set_state

    def counting(state: object) -> None:
        entered.append(state)
        set_state(state)

    saved = Singleton.get_state()
    monkeypatch.setattr(Singleton, "set_state", staticmethod(counting))
    monkeypatch.setattr(job_module, "_entered", set())
    try:
        job = HydraJob(None, task, None, SweepSpace(), cwd=".", hydra_state=saved)
        for _ in range(3):  # three trials of the sweep on one worker
            cloudpickle.loads(cloudpickle.dumps(job))._enter_hydra()
        assert len(entered) == 1
        other = HydraJob(None, task, None, SweepSpace(), cwd=".", hydra_state=saved)
        cloudpickle.loads(cloudpickle.dumps(other))._enter_hydra()  # another sweep: its own state
        assert len(entered) == 2
    finally:
        set_state(saved)
