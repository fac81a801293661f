"""What one trial gets: ``resources.gpu: auto`` decided, and a request no node can meet refused.

Ray places a trial only on a node with the CPUs and GPUs it asks for, and when no node has
them it waits for ever (warning every minute), so a typo such as ``resources.gpu=1`` on a
laptop used to look like a hung study. The capacity is read where the trials will run: this
machine's CPUs and NVIDIA devices before a local Ray is started (no Ray start to learn that a
request is impossible), or each live node of the Ray cluster once joined. A cluster that adds
nodes on demand (``ray.autoscaler=true``) may grow into a request, so it is not refused there.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ugro_hpo.errors import ConfigError
from ugro_hpo.execution.ray_session import ensure_ray
from ugro_hpo.study_plan import Plan

log = logging.getLogger(__name__)
LOCAL = "this machine"
GROUP_DRIVER_CPU = 0.01
"""What the Tune trial of a group (``resources.workers`` above 1) holds: it only waits for its
workers, but Ray places no trial that asks for nothing."""
_DEVICE_NODE = re.compile(r"nvidia(\d+)")


@dataclass(frozen=True)
class Capacity:
    """The CPUs and GPUs of each node the trials can run on, and where that was read."""

    nodes: tuple[tuple[float, float], ...]  # (cpus, gpus) per node
    where: str
    gpu_memory_gib: float | None = None  # the smallest GPU's memory, where it can be read

    @property
    def gpus(self) -> float:
        return sum(gpus for _, gpus in self.nodes)

    def fits(self, cpu: float, gpu: float, workers: int = 1) -> bool:
        """Can one trial of ``workers`` processes, each asking for ``cpu`` and ``gpu``, be
        placed (a group's workers may be spread over nodes)?"""
        if workers == 1:
            return any(cpus >= cpu and gpus >= gpu for cpus, gpus in self.nodes)
        return self.worker_slots(cpu, gpu) >= workers

    def worker_slots(self, cpu: float, gpu: float) -> int:
        """How many processes asking for ``cpu`` and ``gpu`` the nodes hold at once."""
        slots = 0
        for cpus, gpus in self.nodes:
            fit = [math.floor(have / need + 1e-9) for have, need in ((cpus, cpu), (gpus, gpu))
                   if need > 0]  # fmt: skip
            slots += min(fit) if fit else 0
        return slots

    def trials_at_once(self, cpu: float, gpu: float, workers: int = 1) -> int:
        """How many trials of ``workers`` processes each run at the same time (a group's
        trial also holds `GROUP_DRIVER_CPU`)."""
        if workers == 1:
            return self.worker_slots(cpu, gpu)
        trials = 0
        while self._holds(cpu, gpu, workers, trials + 1):
            trials += 1
        return trials

    def _holds(self, cpu: float, gpu: float, workers: int, trials: int) -> bool:
        """Do the nodes hold ``trials`` groups (their drivers placed first, on the roomiest)?"""
        nodes = sorted(([c, g] for c, g in self.nodes), reverse=True)
        for _ in range(trials):
            nodes[0][0] -= GROUP_DRIVER_CPU
            if nodes[0][0] < 0:
                return False
        return Capacity(tuple((c, g) for c, g in nodes), self.where).worker_slots(cpu, gpu) >= (
            workers * trials
        )

    def describe(self) -> str:
        cpus = sum(cpus for cpus, _ in self.nodes)
        count = len(self.nodes)
        nodes = f" on {count} nodes" if count > 1 else ""
        return f"{self.where} has {cpus:g} CPUs and {self.gpus:g} GPUs{nodes}"


def local_gpu_count(devices: Path = Path("/dev"), env: Mapping[str, str] | None = None) -> int:
    """NVIDIA GPUs this process may use: the driver's device nodes (``/dev/nvidia0``, ...),
    narrowed by ``CUDA_VISIBLE_DEVICES`` as CUDA and Ray narrow them. Reading a directory
    costs nothing, where importing torch to ask CUDA costs seconds."""
    env = os.environ if env is None else env
    try:
        physical = sum(1 for p in devices.iterdir() if _DEVICE_NODE.fullmatch(p.name))
    except OSError:
        physical = 0
    if physical == 0 and devices == Path("/dev"):
        physical = _nvidia_smi_count()  # a container may show the GPUs without their nodes
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return physical
    ids = [i for i in visible.split(",") if i.strip()]
    if not ids or ids[0].strip().startswith("-"):
        return 0  # "" or "-1": CUDA shows no device
    return min(len(ids), physical)


def _nvidia_smi_count() -> int:
    """GPUs ``nvidia-smi -L`` lists (0 without it): asked only when /dev shows none."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listed.splitlines() if line.startswith("GPU "))


def local_capacity(num_cpus: int | None) -> Capacity:
    """This machine, as a Ray started here will see it."""
    cpus = float(num_cpus) if num_cpus else float(os.cpu_count() or 1)
    gpus = local_gpu_count()
    return Capacity(((cpus, float(gpus)),), LOCAL, local_gpu_memory_gib() if gpus else None)


def local_gpu_memory_gib() -> float | None:
    """The smallest local GPU's memory, from ``nvidia-smi`` (None where it cannot be read)."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
        return min(float(line) for line in out.split()) / 1024
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def ray_capacity(where: str) -> Capacity:
    """Every live node of the Ray cluster this process has joined."""
    import ray

    nodes = tuple(
        (float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
        for n in ray.nodes()
        if n.get("Alive")
    )
    return Capacity(nodes, where)


def ray_in_use() -> bool:
    """Whether this process already uses a Ray (asked without importing Ray)."""
    import sys

    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def placement_capacity(plan: Plan) -> Capacity:
    """Where the trials will run: the Ray this process already uses, the cluster at
    ``ray.address`` (joined now), or this machine, read without starting Ray."""
    if ray_in_use():
        return ray_capacity("the Ray instance this process uses")
    if plan.ray_address:
        ensure_ray(plan)  # a cluster that cannot be joined fails here, before anything is written
        return ray_capacity(f"the Ray cluster at {plan.ray_address}")
    return local_capacity(plan.ray_num_cpus)


def settle(plan: Plan, capacity: Capacity, autoscaler: bool = False) -> Plan:
    """The plan with ``resources.gpu`` decided and checked against ``capacity``.

    ``auto`` gives each trial one GPU when there are GPUs and the objective can use one (LoRA
    training can; a synthetic benchmark cannot), else none.
    """
    resources = dict(plan.resources)
    uses_gpu = plan.uses_gpu
    reason = ""
    if plan.gpu_auto:
        if not uses_gpu:
            resources["gpu"], reason = 0.0, "auto: this objective does not use a GPU"
        elif capacity.gpus > 0:
            resources["gpu"], reason = 1.0, f"auto: {capacity.describe()}"
        else:
            resources["gpu"], reason = 0.0, f"auto: {capacity.describe()}"
    needs = plan.gpu_only
    if needs and resources["gpu"] <= 0:
        why = reason or "resources.gpu=0"
        raise ConfigError(
            f"{needs}, and trials get no GPU ({why}); run it where there is one "
            "(resources.gpu=auto or 1), or choose a model that is not quantised"
        )
    if plan.workers > 1 and plan.strategy == "fsdp" and resources["gpu"] <= 0:
        raise ConfigError(
            "fsdp shards the model over GPUs and trials get none here; use "
            "resources.strategy=ddp, or give each worker a GPU (resources.gpu=1)",
            key="resources.strategy",
        )
    check_placeable(resources, capacity, autoscaler, plan.workers)
    reason = _at_once_note(plan, resources, capacity, autoscaler, reason)
    warning = _memory_warning(plan.gpu_memory_gib, resources["gpu"], capacity.gpu_memory_gib)
    if warning:
        log.warning("%s", warning)
        reason = f"{reason}; {warning}" if reason else warning
    config = {**plan.config, "resources": {**(plan.config.get("resources") or {}), **resources}}
    return replace(plan, resources=resources, resources_reason=reason, config=config)


def _memory_warning(needs: float | None, gpu: float, card_gib: float | None) -> str | None:
    """A model whose weights alone exceed the GPU memory a trial gets (its share of the card)."""
    if not needs or gpu <= 0 or not card_gib:
        return None
    share = card_gib * min(gpu, 1.0)
    if needs <= share:
        return None
    return (
        f"warning: the model's weights need about {needs:.1f} GiB but a trial gets "
        f"{share:.1f} GiB ({min(gpu, 1.0):g} of a {card_gib:.0f} GiB GPU); raise resources.gpu"
    )


def _at_once_note(
    plan: Plan, resources: Mapping[str, float], capacity: Capacity, autoscaler: bool, reason: str
) -> str:
    """With several workers per trial, say how many trials run at once when fewer than
    ``parallel_jobs`` fit (each trial holds ``workers`` times a worker's resources)."""
    if plan.workers == 1 or autoscaler:
        return reason
    at_once = capacity.trials_at_once(resources["cpu"], resources["gpu"], plan.workers)
    if at_once >= plan.parallel_jobs:
        return reason
    note = (f"{at_once} trial(s) of {plan.workers} workers fit at once "
            f"({capacity.describe()}), not parallel_jobs={plan.parallel_jobs}")  # fmt: skip
    log.info("%s", note)
    return f"{reason}; {note}" if reason else note


def check_placeable(
    resources: Mapping[str, float], capacity: Capacity, autoscaler: bool, workers: int = 1
) -> None:
    """A one-line error when no node has what one trial asks for, or the nodes together
    cannot hold a trial's ``workers`` processes (Ray would wait for ever)."""
    if autoscaler or capacity.fits(resources["cpu"], resources["gpu"], workers):
        return
    if workers > 1 and capacity.fits(resources["cpu"], resources["gpu"]):
        slots = capacity.worker_slots(resources["cpu"], resources["gpu"])
        raise ConfigError(
            f"resources.workers={workers}: a trial needs {workers} workers of "
            f"{resources['cpu']:g} cpu and {resources['gpu']:g} gpu, and {capacity.describe()} "
            f"(room for {slots}); lower resources.workers, resources.cpu or resources.gpu"
        )
    raise ConfigError(_unplaceable(resources, capacity))


def _unplaceable(resources: Mapping[str, float], capacity: Capacity) -> str:
    cpu, gpu = resources["cpu"], resources["gpu"]
    largest_cpus = max((cpus for cpus, _ in capacity.nodes), default=0.0)
    if gpu > 0 and capacity.gpus == 0:
        fix = "set resources.gpu=0 (or auto), or join a cluster with GPUs (ray.address=...)"
        key = f"resources.gpu={gpu:g}"
    elif cpu > largest_cpus:
        fix = f"set resources.cpu to at most {largest_cpus:g}"
        key = f"resources.cpu={cpu:g}"
    else:
        fix = "lower resources.cpu or resources.gpu"
        key = f"resources.cpu={cpu:g}, resources.gpu={gpu:g}"
    if capacity.where != LOCAL:
        fix += " (or ray.autoscaler=true if the cluster adds nodes on demand)"
    return (
        f"{key}: no node can run a trial that asks for {cpu:g} cpu and {gpu:g} gpu "
        f"({capacity.describe()}); {fix}"
    )
