"""A trial's Hydra job inside a reused Ray worker: the sweep's Hydra state is taken on once."""

from __future__ import annotations

from pathlib import Path

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


def test_a_job_on_a_node_composes_from_its_copy_of_the_shipped_app_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's node has the app's folder where Ray unpacked it, not at the driver's path:
    the job's config folder and working directory are the copy's (a node without the driver's
    files would otherwise fail to compose)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.utils import setup_globals
    from hydra.types import HydraContext, RunMode

    from ugro_hpo.execution.code_shipping import SHIPPED_FROM_VARIABLE

    origin, copy = tmp_path / "driver" / "app", tmp_path / "node" / "unpacked"
    for folder, x in ((origin, 1), (copy, 2)):
        (folder / "conf").mkdir(parents=True)
        (folder / "conf" / "app.yaml").write_text(f"x: {x}\n")
    setup_globals()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(origin / "conf")))
    context = HydraContext(config_loader=loader, callbacks=None)  # type: ignore[arg-type]
    job = HydraJob(context, task, None, SweepSpace(), cwd=str(origin), hydra_state=None)

    def composed(ctx: HydraContext) -> int:
        return ctx.config_loader.load_configuration("app", [], RunMode.RUN).x  # type: ignore[no-any-return]

    assert job._on_this_node() == (context, str(origin))  # nothing shipped: the driver's own
    assert composed(context) == 1
    monkeypatch.setenv(SHIPPED_FROM_VARIABLE, str(origin))
    monkeypatch.chdir(copy)  # a trial starts in its copy of the shipped folder
    moved, cwd = job._on_this_node()
    assert cwd == str(copy) and composed(moved) == 2
    outside = HydraJob(context, task, None, SweepSpace(), cwd=str(tmp_path / "elsewhere"),
                       hydra_state=None)  # fmt: skip
    assert outside._on_this_node()[1] == str(copy)  # a driver's cwd this node lacks


def test_a_path_outside_the_shipped_folder_is_left_alone() -> None:
    from ugro_hpo.execution.code_shipping import in_copy

    origin, copy = Path("/home/me/app"), Path("/ray/unpacked")
    assert in_copy("/home/me/app/conf", origin, copy) == "/ray/unpacked/conf"
    assert in_copy("/home/me/app", origin, copy) == "/ray/unpacked"
    assert in_copy("/home/me/app/../secrets", origin, copy) == "/home/me/app/../secrets"
    assert in_copy("/home/me/apps/conf", origin, copy) == "/home/me/apps/conf"
