"""A trial run by a data-parallel group of processes (``resources.workers`` above 1).

Ray Train inside the Tune trial, as Ray documents it for Train V2 with Tune: the trial's Tune
function (which holds no CPU or GPU of its own) launches a `TorchTrainer` whose workers each
get ``resources.cpu`` and ``resources.gpu``, and Ray's `TuneReportCallback` hands rank 0's
reports to the trial. Every rank runs the objective with the parameters sampled once, in the
driver, for this trial; only rank 0's reports (checked by the same `Reporter` as a one-process
trial's) form the trial's result stream: the other ranks join each report with an empty one,
because a Ray Train report is a step every worker takes together. A failure on any rank ends
the group (``max_failures=0``) and fails the trial with that rank's error; a scheduler's stop ends
the trial, and the driver then removes the group's placement group, which ends every worker in
it (`group_release`).

Each rank writes ``workers/rank_<r>.json`` into the trial's folder: its rank, the group's size,
its process id and the parameters it was handed.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugro_hpo.execution.trial_runner import Reporter, TrialTimeout, run_objective
from ugro_hpo.objectives.base import Objective, TrialContext
from ugro_hpo.optimize import protocol as p

WORKERS_FOLDER = "workers"


@dataclass(frozen=True)
class TrialSteps:
    """What a one-process trial does that a group's trial and its ranks do too (given by
    `trainable`, which this module does not import): build the objective, scrub the output,
    free memory, and describe a failure in at most ``max_error`` characters."""

    objective: Callable[[Any], Objective]
    scrub_output: Callable[[Any], None]
    release_memory: Callable[[], None]
    describe: Callable[[BaseException], str]
    max_error: int


class GroupFailure(RuntimeError):
    """How a rank's objective ended early, raised as an ordinary error so that Ray Train ends
    the whole group: its description, the last step it reported, and whether it was
    trial_timeout_s (a pruned trial) rather than a failure."""

    def __init__(self, text: str, step: int, timed_out: bool = False) -> None:
        super().__init__(text, step, timed_out)
        self.text, self.step, self.timed_out = text, step, timed_out


def run_group(
    params: dict[str, Any], context: TrialContext, spec: dict[str, Any], steps: TrialSteps
) -> None:
    """Run the trial as ``context.workers`` processes and report how it ended to Tune."""
    from ray import train, tune
    from ray.train.torch import TorchConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    from ugro_hpo.execution.ray_compat import group_trainer
    from ugro_hpo.security.digests import scrub_then_cut

    trial_dir = trial_folder(spec["experiment_storage"], tune.get_context().get_trial_id())
    cpu, gpu = float(context.resources["cpu"]), float(context.resources["gpu"])
    per_worker = {"CPU": cpu, **({"GPU": gpu} if gpu > 0 else {})}
    trainer = group_trainer()(
        worker_loop,
        train_loop_config={
            "params": params,
            "context": context,
            "spec": spec,
            "steps": steps,
            "trial_dir": trial_dir,
        },
        torch_config=TorchConfig(backend="nccl" if gpu > 0 else "gloo"),
        scaling_config=train.ScalingConfig(
            num_workers=context.workers, use_gpu=gpu > 0, resources_per_worker=per_worker
        ),
        run_config=train.RunConfig(
            name="group",
            storage_path=trial_dir,
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]  # V2 types it apart
            failure_config=train.FailureConfig(max_failures=0),
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:  # a rank's failure (or the group's) is this trial's
        cause = first_failure(exc)
        if isinstance(cause, GroupFailure):
            text, step, timed_out = cause.text, cause.step, cause.timed_out
        else:
            text, step, timed_out = steps.describe(cause), 0, False
        if timed_out:
            tune.report({p.RESULT_STATE: p.Outcome.PRUNED.value, p.RESULT_REASON: text,
                         p.STEP: step})  # fmt: skip
            return
        error = scrub_then_cut(spec["secret_digests"].scrub, text, steps.max_error)
        tune.report({p.RESULT_STATE: p.Outcome.FAILED.value, p.RESULT_ERROR: error,
                     p.STEP: step})  # fmt: skip


def first_failure(exc: BaseException) -> BaseException:
    """The lowest rank's exception of a failed group (Ray Train's `WorkerGroupError`), else
    ``exc`` itself; an error a Ray task wrapped is unwrapped to the objective's own."""
    failures = getattr(exc, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        exc = failures[min(failures)]
    cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError keeps the original
    return cause if isinstance(cause, BaseException) else exc


def worker_loop(config: dict[str, Any]) -> None:
    """What each rank runs: the objective, with the trial's parameters, in Ray Train's group."""
    import ray
    from ray import train

    spec, context, steps = config["spec"], config["context"], config["steps"]
    params = dict(config["params"])
    digests = spec["secret_digests"]
    steps.scrub_output(digests)
    rank, world = train.get_context().get_world_rank(), train.get_context().get_world_size()
    device = "cpu"
    if float(context.resources["gpu"]) > 0:
        import torch
        from ray.train.torch import get_device

        torch.cuda.set_device(get_device())  # "cuda" is this rank's own GPU from here on
        device = physical_gpu(torch.cuda.current_device())
    write_rank_record(config["trial_dir"], rank, world, params, device)
    names_checked = functools.lru_cache(maxsize=1024)(digests.scrub)
    # Rank 0's reports are the trial's, and each names the group's placement group, which the
    # driver removes when the trial ends (`group_release`); the other ranks join with nothing.
    placement = ray.util.get_current_placement_group()
    group = {p.GROUP_PLACEMENT: placement.id.hex()} if placement is not None else {}

    def report(metrics: dict[str, Any]) -> None:
        train.report({**metrics, **group} if rank == 0 else {})

    reporter = Reporter(context.metrics, report, spec.get("trial_timeout_s") if rank == 0 else None,
                        names_checked)  # fmt: skip
    try:
        final = run_objective(steps.objective(spec["objective"]), params, context, reporter,
                              names_checked)  # fmt: skip
    except TrialTimeout as timeout:
        raise GroupFailure(str(timeout), reporter.last_step, timed_out=True) from None
    except (Exception, SystemExit) as exc:  # described here, where the objective's frames are
        raise GroupFailure(steps.describe(exc), reporter.last_step) from None
    finally:
        steps.release_memory()
    state = p.Outcome.COMPLETE.value
    report({**final, p.STEP: max(reporter.last_step, 1), p.RESULT_STATE: state})


def trial_folder(experiment_storage: str, trial_id: str) -> str:
    """The trial's folder in Ray's storage (a path or a bucket URI). Not Tune's
    ``get_trial_dir()``: in an actor reused for another trial, that names a Ray session's
    working folder on this node instead."""
    from ugro_hpo.optimize.checkpoints import trial_dir_name

    return f"{experiment_storage}/{trial_dir_name(trial_id)}"


def physical_gpu(index: int) -> str:
    """The GPU this process's CUDA device ``index`` is, as the node names it (Ray sets
    CUDA_VISIBLE_DEVICES to the group's GPUs on the node): ``cuda:<id>``."""
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return f"cuda:{visible[index] if index < len(visible) else index}"


def write_rank_record(
    trial_dir: str, rank: int, world: int, params: dict[str, Any], device: str = "cpu"
) -> None:
    """``workers/rank_<r>.json`` in the trial's folder: who this rank is, where it runs and
    what it trains. Only where Ray's storage is a folder (local or shared); in a bucket there
    is none."""
    from ugro_hpo.optimize.checkpoints import is_uri

    if is_uri(trial_dir):
        return
    folder = Path(trial_dir) / WORKERS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    record = {"rank": rank, "world_size": world, "pid": os.getpid(), "device": device,
              "params": params}  # fmt: skip
    partial = folder / f".rank_{rank}.json.part"
    partial.write_text(json.dumps(record, sort_keys=True, default=str))
    partial.replace(folder / f"rank_{rank}.json")
