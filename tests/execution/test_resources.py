"""What a trial gets: `resources.gpu: auto` decided from where the trials run, a request no
node can meet refused in one line before Ray waits for ever, and a 4-bit model refused where
there is no GPU. Capacities are read from real sources: a device directory laid out as the
NVIDIA driver lays it out, and a real Ray head that declares GPUs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli
from servers import RayHead

from ugro_hpo.config.plan import build_plan
from ugro_hpo.errors import ConfigError
from ugro_hpo.execution.resources import LOCAL, Capacity, local_gpu_count, settle

SPACES = Path(__file__).parents[1] / "fixtures" / "ugro_search_spaces"
SYNTHETIC = ["objective=synthetic", "search_space=quadratic", "tracking=none"]
# The example command of UGRO's W&B guide.
GUIDE = ["hpo", "sweep", "--study-name", "llama-lora-hpo", "--search-space", str(SPACES / "llama_lora_hpo.yaml"),
         "--n-trials", "100", "--parallel-jobs", "8", "--wandb-project", "my-lora-experiments",
         "--model", "meta-llama/Llama-2-7b-hf", "--dataset", "wikitext", "--dry-run"]  # fmt: skip


def devices(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "dev"
    folder.mkdir()
    for name in names:
        (folder / name).touch()
    return folder


@pytest.mark.parametrize(
    ("visible", "expected"),
    [(None, 2), ("1", 1), ("0,1,2,3", 2), ("", 0), ("-1", 0), ("GPU-1a2b", 1)],
)
def test_local_gpus_are_the_driver_s_devices_narrowed_by_cuda_visible_devices(
    tmp_path: Path, visible: str | None, expected: int
) -> None:
    dev = devices(tmp_path, "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null")
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert local_gpu_count(dev, env) == expected


def test_no_driver_means_no_gpu(tmp_path: Path) -> None:
    assert local_gpu_count(tmp_path / "missing", {}) == 0
    assert local_gpu_count(devices(tmp_path, "null", "tty0"), {}) == 0


def plan_of(compose, tmp_path: Path, *overrides: str):
    return build_plan(compose(*overrides), tmp_path / "run")


def test_auto_gives_lora_trials_one_gpu_where_there_are_gpus(compose, tmp_path: Path) -> None:
    plan = plan_of(compose, tmp_path)
    assert plan.gpu_auto
    cluster = Capacity(((8.0, 2.0),), "the Ray cluster at 10.0.0.1:6379")
    settled = settle(plan, cluster)
    assert settled.resources == {"cpu": 1.0, "gpu": 1.0}
    assert (
        settled.resources_reason == "auto: the Ray cluster at 10.0.0.1:6379 has 8 CPUs and 2 GPUs"
    )
    assert settled.config["resources"]["gpu"] == 1.0  # stored and snapshotted as a number
    assert settle(plan, Capacity(((2.0, 0.0),), LOCAL)).resources["gpu"] == 0.0


def test_auto_gives_no_gpu_to_an_objective_that_cannot_use_one(compose, tmp_path: Path) -> None:
    settled = settle(plan_of(compose, tmp_path, *SYNTHETIC), Capacity(((8.0, 2.0),), LOCAL))
    assert settled.resources["gpu"] == 0.0
    assert settled.resources_reason == "auto: this objective does not use a GPU"


def test_a_number_is_kept(compose, tmp_path: Path) -> None:
    plan = plan_of(compose, tmp_path, "resources.gpu=0.25")
    settled = settle(plan, Capacity(((4.0, 1.0),), LOCAL))
    assert settled.resources == {"cpu": 1.0, "gpu": 0.25} and settled.resources_reason == ""


@pytest.mark.parametrize(
    ("overrides", "nodes", "where", "message"),
    [
        (["resources.gpu=1"], ((2.0, 0.0),), LOCAL,
         "resources.gpu=1: no node can run a trial that asks for 1 cpu and 1 gpu (this machine has "
         "2 CPUs and 0 GPUs); set resources.gpu=0 (or auto), or join a cluster with GPUs"),
        (["resources.cpu=4"], ((2.0, 0.0),), LOCAL, "resources.cpu=4: no node can run a trial that "
         "asks for 4 cpu and 0 gpu (this machine has 2 CPUs and 0 GPUs); set resources.cpu to at most 2"),
        (["resources.cpu=2", "resources.gpu=1"], ((2.0, 0.0), (1.0, 1.0)), "the Ray cluster at h:1",
         "no node can run a trial that asks for 2 cpu and 1 gpu (the Ray cluster at h:1 has 3 CPUs "
         "and 1 GPUs on 2 nodes); lower resources.cpu or resources.gpu (or ray.autoscaler=true"),
    ],
)  # fmt: skip
def test_a_trial_no_node_can_run_is_refused(
    compose, tmp_path: Path, overrides, nodes, where, message
) -> None:
    plan = plan_of(compose, tmp_path, *SYNTHETIC, *overrides)
    with pytest.raises(ConfigError) as refused:
        settle(plan, Capacity(nodes, where))
    assert message in str(refused.value)
    assert settle(plan, Capacity(nodes, where), autoscaler=True).resources  # it may grow


def test_a_4bit_model_without_a_gpu_is_refused_before_anything_runs(
    compose, tmp_path: Path
) -> None:
    for overrides in (["model=tinyllama_4bit"], ["model=hf", "model.name_or_path=unsloth/tinyllama-bnb-4bit"]):  # fmt: skip
        plan = plan_of(compose, tmp_path, *overrides)
        with pytest.raises(ConfigError, match=r"needs a CUDA GPU, and trials get no GPU \(auto: "):
            settle(plan, Capacity(((2.0, 0.0),), LOCAL))
        assert settle(plan, Capacity(((2.0, 1.0),), LOCAL)).resources["gpu"] == 1.0


def test_the_guide_s_command_plans_no_gpu_on_this_machine(tmp_path: Path) -> None:
    if local_gpu_count():
        pytest.skip("this machine has a GPU")
    result = run_cli(*GUIDE, cwd=tmp_path, module="ugro_hpo.cli")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 cpu, 0 gpu per trial  (auto: this machine has" in result.stdout


def test_impossible_resources_and_a_4bit_model_are_one_line_errors_that_start_nothing(
    tmp_path: Path,
) -> None:
    if local_gpu_count():
        pytest.skip("this machine has a GPU")
    for args in (["resources.gpu=1", *SYNTHETIC], ["resources.cpu=4096", *SYNTHETIC],
                 ["model=hf", "model.name_or_path=unsloth/tinyllama-bnb-4bit"]):  # fmt: skip
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-3000:]
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "outputs").exists()  # no study, no Ray session, nothing written


@pytest.mark.slow
def test_on_a_cluster_with_gpus_the_guide_s_command_plans_one_gpu_per_trial(
    tmp_path: Path,
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    head = RayHead(num_cpus=1, num_gpus=2, env={"UGRO_TEST_NODE_LOG": str(notes)})
    try:
        result = run_cli(*GUIDE, "--ray-address", head.address, cwd=tmp_path, module="ugro_hpo.cli",
                         env=head.env)  # fmt: skip
        too_many = run_cli(*SYNTHETIC, "resources.gpu=4", f"ray.address={head.address}",
                           cwd=tmp_path, env=head.env)  # fmt: skip
        offline = run_cli(*SYNTHETIC, "objective=custom", "objective.fn=fixture_objectives:hub_offline_switch",
                          "n_trials=1", f"ray.address={head.address}", cwd=tmp_path,
                          env={**head.env, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    finally:
        head.stop()
    # The driver's offline switch reaches trials on a cluster started without it.
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert (notes / "HF_HUB_OFFLINE").read_text() == "1"
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"1 cpu, 1 gpu per trial  (auto: the Ray cluster at {head.address} has 1 CPUs and 2 GPUs)"
        in result.stdout
    )
    assert too_many.returncode == 2
    assert "resources.gpu=4: no node can run a trial" in too_many.stderr
    assert "ray.autoscaler=true" in too_many.stderr


def test_a_model_larger_than_a_trial_s_share_of_the_gpu_is_a_warning_in_the_plan(
    compose, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = Capacity(((16.0, 1.0),), LOCAL, gpu_memory_gib=24.0)
    squeezed = plan_of(compose, tmp_path, "model=llama2_7b", "resources.gpu=0.25")
    with caplog.at_level("WARNING", logger="ugro_hpo.execution.resources"):
        settled = settle(squeezed, card)
    warning = (
        "the model's weights need about 13.0 GiB but a trial gets 6.0 GiB (0.25 of a 24 GiB GPU)"
    )
    assert warning in settled.resources_reason and warning in caplog.text
    assert (
        settle(
            plan_of(compose, tmp_path, "model=llama2_7b", "resources.gpu=1"), card
        ).resources_reason
        == ""
    )
    four_bit = plan_of(
        compose, tmp_path, "model=llama2_7b", "model.quantization=4bit", "resources.gpu=0.25"
    )
    assert settle(four_bit, card).resources_reason == ""  # 3.3 GiB in 4 bits fits its 6 GiB


def test_without_device_nodes_the_gpus_nvidia_smi_lists_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if local_gpu_count():
        pytest.skip("this machine has a GPU")
    smi = tmp_path / "bin" / "nvidia-smi"  # what a container without /dev/nvidia* nodes shows
    smi.parent.mkdir()
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-2)'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert local_gpu_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert local_gpu_count() == 1
