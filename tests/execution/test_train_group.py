"""Several workers per trial (``resources.workers``): the setting is checked in one line,
placement counts every worker of a trial, and a LoRA study on CPU runs each trial as a gloo
group of two processes that train with the same parameters, report as one stream, and are
all gone once ASHA stops their trial."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import optuna
import pytest
from conftest import FIXTURES, QUICK, run_cli
from wandb_records import read_runs

from ugro_hpo.config.plan import build_plan
from ugro_hpo.errors import ConfigError
from ugro_hpo.execution.resources import GROUP_DRIVER_CPU, LOCAL, Capacity, check_placeable, settle


def plan_of(compose, tmp_path: Path, *overrides: str):
    return build_plan(compose(*overrides), tmp_path / "run")


def test_one_worker_per_trial_by_default(compose, tmp_path: Path) -> None:
    plan = plan_of(compose, tmp_path)
    assert (plan.workers, plan.strategy) == (1, "ddp")


def test_workers_reach_the_plan(compose, tmp_path: Path) -> None:
    plan = plan_of(compose, tmp_path, "resources.workers=4", "resources.strategy=fsdp")
    assert (plan.workers, plan.strategy) == (4, "fsdp")


@pytest.mark.parametrize("value", ["0", "-2"])
def test_fewer_than_one_worker_is_refused(compose, tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"resources\.workers.*whole number >= 1"):
        plan_of(compose, tmp_path, f"resources.workers={value}")


def test_an_objective_of_one_process_refuses_several_workers(compose, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"resources\.workers.*'synthetic\(quadratic\)'.*workers=1"
    ):
        plan_of(compose, tmp_path, *QUICK, "resources.workers=2")


def test_checkpoints_in_a_group_are_refused(compose, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"resources\.workers.*checkpoint_every=0"):
        plan_of(compose, tmp_path, "resources.workers=2", "objective.checkpoint_every=5")


def test_an_unknown_strategy_is_refused(compose, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"resources\.strategy.*'zero3'"):
        plan_of(compose, tmp_path, "resources.strategy=zero3")


def test_fsdp_without_gpus_is_refused(compose, tmp_path: Path) -> None:
    plan = plan_of(
        compose, tmp_path, "resources.workers=2", "resources.strategy=fsdp", "resources.gpu=0"
    )
    with pytest.raises(ConfigError, match=r"resources\.strategy.*fsdp.*GPU"):
        settle(plan, Capacity(((8.0, 0.0),), LOCAL))


@pytest.mark.parametrize("value", ["abc", "1.5", "true"])
def test_workers_that_are_not_a_whole_number_end_in_one_line(tmp_path: Path, value: str) -> None:
    done = run_cli(*QUICK, f"resources.workers={value}", "dry_run=true", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "resources.workers" in lines[0], done.stderr
    assert "converted to Integer" in lines[0]  # a typed setting, not an unknown key
    assert "Traceback" not in done.stderr


def test_a_group_is_placed_only_where_all_its_workers_fit() -> None:
    two_nodes = Capacity(((4.0, 1.0), (4.0, 1.0)), "the Ray cluster at 10.0.0.1:6379")
    check_placeable({"cpu": 2.0, "gpu": 1.0}, two_nodes, False, workers=2)  # one per node
    with pytest.raises(ConfigError, match=r"resources\.workers=3.*room for 2"):
        check_placeable({"cpu": 2.0, "gpu": 1.0}, two_nodes, False, workers=3)
    assert not two_nodes.fits(2.0, 1.0, workers=3)


def test_trials_at_once_count_every_worker_and_the_trial_s_own_share() -> None:
    machine = Capacity(((8.0, 0.0),), LOCAL)
    assert machine.trials_at_once(1.0, 0.0) == 8
    assert machine.trials_at_once(1.0, 0.0, workers=2) == 3  # 4 groups would need 8 + 4 * 0.01
    assert machine.trials_at_once(0.99, 0.0, workers=2) == 4
    gpus = Capacity(((16.0, 4.0), (16.0, 4.0)), "a cluster")
    assert gpus.trials_at_once(2.0, 1.0, workers=4) == 2
    assert GROUP_DRIVER_CPU < 0.05


def test_fewer_trials_at_once_than_parallel_jobs_are_said(compose, tmp_path: Path) -> None:
    plan = plan_of(compose, tmp_path, "resources.workers=2", "resources.gpu=0", "parallel_jobs=4")
    settled = settle(plan, Capacity(((4.0, 0.0),), LOCAL))
    assert "1 trial(s) of 2 workers fit at once" in settled.resources_reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def _gone(pids: list[int], within_s: float = 120.0) -> list[int]:
    """The pids still alive after waiting (a killed actor's process exits on its own time)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.5)
    return [p for p in pids if _alive(p)]


def _two_worker_study(study, lora_overrides, tmp_path: Path, gpu: str) -> list[dict]:
    """A 2-trial ASHA study of 2-worker groups, checked as the issue asks: both ranks of a
    trial train with its parameters, one result stream per trial, ASHA stops one group, and
    no process of any group is left. Returns every rank's record."""
    from ray.util.placement_group import placement_group_table

    untracked = [o for o in lora_overrides if not o.startswith("tracking=")]
    before = set(placement_group_table())
    result = study(*untracked, "tracking=wandb", "wandb.project=groups", "wandb.mode=offline",
                   f"search_space_file={FIXTURES / 'two_rates_lora.yaml'}",
                   "search=grid", "n_trials=2", "parallel_jobs=1", "max_steps=6", "eval_every=2",
                   "dataset.seq_len=32", "resources.workers=2", "resources.cpu=0.45",
                   f"resources.gpu={gpu}", "scheduler=asha")  # fmt: skip
    # The grid proposes the defaults' point (3e-3) first, then the far too large rate, which
    # meets a rung that the good trial has already reached.
    good = [r for r in result.records if r.params["learning_rate"] == 3e-3]
    bad = [r for r in result.records if r.params["learning_rate"] == 0.3]
    assert good and all(r.state == "complete" and r.last_step == 6 for r in good)
    assert len(bad) == 1 and bad[0].state == "pruned" and bad[0].last_step == 2  # ASHA's stop

    trial_dirs = sorted({p.parents[1] for p in (tmp_path / "outputs").rglob("workers/rank_*.json")})
    assert len(trial_dirs) == len(result.records)  # each trial's group keeps its own records
    stored = optuna.load_study(study_name=result.plan.study_name, storage=result.plan.storage)
    by_folder = {f"trial_{t.user_attrs['ray_trial_id']}": t for t in stored.trials}
    runs = {r.config["trial_number"]: r for r in read_runs(tmp_path / "outputs" / "wandb")}
    assert sorted(runs) == sorted(t.number for t in stored.trials)  # one W&B run per trial
    records = []
    for trial_dir in trial_dirs:
        ranks = [json.loads((trial_dir / "workers" / f"rank_{r}.json").read_text()) for r in (0, 1)]
        # (a) both ranks of a trial train with the one set of parameters sampled for it
        assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
        assert ranks[0]["params"] == ranks[1]["params"] == by_folder[trial_dir.name].params
        assert ranks[0]["pid"] != ranks[1]["pid"]
        records += ranks
        # (b) one result stream per trial: each evaluation once, in step order, in the study
        # and in the trial's W&B run
        trial = by_folder[trial_dir.name]
        steps = [2] if trial.params["learning_rate"] == 0.3 else [2, 4, 6]
        assert sorted(trial.intermediate_values) == steps
        logged = [row["_step"] for row in runs[trial.number].history if "eval_loss" in row]
        assert logged == steps, logged
    # (c) + (d) the stopped group and the finished one leave no process behind, and no
    # reserved CPU or GPU: each group's placement group is removed, the stopped one's too
    assert _gone([r["pid"] for r in records]) == []
    groups = {
        k: v
        for k, v in placement_group_table().items()
        if k not in before and len(v["bundles"]) == 2
    }
    assert len(groups) == len(result.records)
    assert {v["state"] for v in groups.values()} == {"REMOVED"}, groups
    return records


@pytest.mark.slow
def test_a_two_worker_lora_study_on_cpu(study, lora_overrides, tmp_path: Path) -> None:
    records = _two_worker_study(study, lora_overrides, tmp_path, gpu="0")
    assert {r["device"] for r in records} == {"cpu"}


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _gpu_pids() -> set[int]:
    """Processes nvidia-smi lists as holding GPU memory (none listed in some containers)."""
    import subprocess

    listed = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return {int(line) for line in listed.stdout.split() if line.strip().isdigit()}


@pytest.mark.gpu
@pytest.mark.slow
def test_a_two_worker_group_on_two_gpus_leaves_no_memory_held(
    study, lora_overrides, tmp_path: Path
) -> None:
    """The same study with one GPU per worker: the ranks of a group train on two GPUs (NCCL),
    and once stopped or finished no rank holds GPU memory."""
    if _cuda_devices() < 2:
        pytest.skip(f"needs 2 CUDA devices; this machine has {_cuda_devices()}")
    records = _two_worker_study(study, lora_overrides, tmp_path, gpu="1")
    for first, second in zip(records[::2], records[1::2], strict=True):
        assert first["device"].startswith("cuda:") and first["device"] != second["device"]
    assert not {r["pid"] for r in records} & _gpu_pids()


def test_a_rank_names_the_node_s_gpu_it_trains_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from ugro_hpo.execution.train_group import physical_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert (physical_gpu(0), physical_gpu(1)) == ("cuda:4", "cuda:6")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert physical_gpu(1) == "cuda:1"


def test_a_rank_s_failure_keeps_its_text_and_step_through_ray() -> None:
    """What a rank raises crosses Ray as a pickle: the trial reads its text, step and kind
    back from the lowest rank's failure of Ray Train's WorkerGroupError."""
    import pickle

    from ray.train import WorkerGroupError

    from ugro_hpo.execution.train_group import GroupFailure, first_failure

    failures = {1: GroupFailure("RuntimeError: rank one", 4), 0: GroupFailure("timeout", 2, True)}
    error = pickle.loads(pickle.dumps(WorkerGroupError("two ranks failed", failures)))
    cause = first_failure(error)
    assert isinstance(cause, GroupFailure)
    assert (cause.text, cause.step, cause.timed_out) == ("timeout", 2, True)
    plain = KeyError("x")
    assert first_failure(plain) is plain
