"""The LoRA loop of one rank in a data-parallel group (``resources.workers`` above 1).

accelerate's `Accelerator` does what it is for: it joins the process group Ray Train set up
(gloo on CPU, NCCL on GPUs), places the model and batches on this rank's device, wraps the
model for DDP (or FSDP with ``resources.strategy=fsdp``), runs mixed precision and
accumulates gradients. Each rank reads its own share of the same seeded batch stream (rank r
takes batches r, r + N, ...), so a step trains on N times ``batch_size`` examples; every rank
evaluates on the whole held-out set, and rank 0's metrics are the ones every rank reports and
decides early stopping on. The one-process loop (`training.train`) stays as it is: it is the
measured fast path, with nothing between steps that one process does not need.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ugro_hpo.lora.training import (
    Hyperparameters,
    TrainingRun,
    build_lr_scheduler,
    build_optimizer,
    evaluate,
)


class ShardedStream:
    """Rank ``rank``'s share of a batch stream every rank draws in the same seeded order."""

    def __init__(self, stream: Any, rank: int, world: int) -> None:
        self.stream, self.rank, self.world = stream, rank, world

    def next(self) -> Any:
        batches = [self.stream.next() for _ in range(self.world)]
        return batches[self.rank]


def is_main_rank() -> bool:
    """Rank 0 of a group, or a process that is not in one (it alone saves an adapter)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _mixed_precision(run: TrainingRun) -> str:
    import torch

    if run.amp_dtype is None or not run.device.startswith("cuda"):
        return "no"
    return "bf16" if run.amp_dtype == torch.bfloat16 else "fp16"


def _accelerator(hp: Hyperparameters, run: TrainingRun, strategy: str) -> Any:
    from accelerate import Accelerator

    plugin = None
    if strategy == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        # LoRA freezes most weights: FSDP must keep the original parameters to mix them.
        plugin = FullyShardedDataParallelPlugin(use_orig_params=True)
    return Accelerator(
        mixed_precision=_mixed_precision(run),
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        cpu=not run.device.startswith("cuda"),
        fsdp_plugin=plugin,
    )


def train_in_group(
    model: Any, hp: Hyperparameters, run: TrainingRun, report: Callable[..., None], strategy: str
) -> tuple[dict[str, float], Any]:
    """Train this rank as `training.train` trains one process; return the best evaluation's
    metrics (the group's throughput: every rank's real tokens per second) and the unwrapped
    model."""
    import torch

    accelerator = _accelerator(hp, run, strategy)
    optimizer = build_optimizer(model, hp)
    model, optimizer = accelerator.prepare(model, optimizer)
    # Stepped by hand once per optimiser step: accelerate's wrapper would step it once per rank.
    scheduler = build_lr_scheduler(optimizer.optimizer, hp, run.max_steps)
    device = str(accelerator.device)
    stream = ShardedStream(run.data.stream(hp.batch_size, run.seed), accelerator.process_index,
                           accelerator.num_processes)  # fmt: skip
    eval_batches = run.data.eval_batches()
    evaluations = set(run.evaluation_steps)
    accumulate = hp.gradient_accumulation_steps
    best: dict[str, float] | None = None
    since_best, train_count, tokens, train_seconds = 0, 0, 0, 0.0
    train_sum = torch.zeros((), device=accelerator.device)
    model.train()
    for step in range(1, run.max_steps + 1):
        started = time.perf_counter()
        micro = [stream.next() for _ in range(accumulate)]
        targets = sum(batch.targets for batch in micro)
        for batch in micro:
            with accelerator.accumulate(model), accelerator.autocast():
                loss = model(**batch.to(device)).loss * (batch.targets / targets)
                accelerator.backward(loss * accumulate)  # accelerate divides by `accumulate`
                if accelerator.sync_gradients and hp.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            train_sum = train_sum + loss.detach().float()
            tokens += batch.tokens
        scheduler.step()
        train_count += 1
        train_seconds += time.perf_counter() - started
        if step not in evaluations:
            continue
        eval_loss, accuracy = evaluate(model, eval_batches, device, run.amp_dtype)
        shared = torch.tensor([eval_loss, accuracy], device=accelerator.device)
        eval_loss, accuracy = (float(v) for v in _from_rank_zero(shared))
        metrics = {
            "eval_loss": eval_loss,
            "eval_perplexity": math.exp(min(eval_loss, 50.0)),
            "eval_token_accuracy": accuracy,
            "train_loss": float(accelerator.reduce(train_sum, "mean")) / max(train_count, 1),
        }
        train_sum, train_count = torch.zeros((), device=accelerator.device), 0
        report(step, **metrics)
        if best is None or eval_loss < best["eval_loss"]:
            best, since_best = {**metrics, "best_step": float(step)}, 0
        else:
            since_best += 1
        if hp.early_stopping_patience and since_best >= hp.early_stopping_patience:
            break
    assert best is not None
    group_tokens = float(
        accelerator.reduce(torch.tensor(float(tokens), device=accelerator.device), "sum")
    )
    best["train_tokens_per_s"] = group_tokens / max(train_seconds, 1e-9)
    return best, accelerator.unwrap_model(model)


def _from_rank_zero(values: Any) -> Any:
    """Rank 0's copy of ``values`` on every rank, so all ranks report and stop alike."""
    from accelerate.utils import broadcast

    return broadcast(values, from_process=0).tolist()
