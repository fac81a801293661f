"""The LoRA training loop and the hyperparameters it understands.

A plain PyTorch loop (no Trainer): each knob maps to one visible place in the code, the loop
adds nothing between steps but the evaluations it reports, and its throughput is that of a
bare peft loop. It runs on any `BatchSource`: blocks of text, or padded or packed
instruction and chat examples whose labels say where the loss is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.validation import whole_number

if TYPE_CHECKING:
    import torch

    from ugro_hpo.lora.batches import Batch
    from ugro_hpo.lora.data import BatchSource

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                 "constant_with_warmup", "inverse_sqrt", "cosine_with_min_lr")  # fmt: skip


@dataclass(frozen=True)
class Hyperparameters:
    """Every knob a search space may tune; values not sampled come from `objective.fixed`."""

    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] | str | None = None
    use_rslora: bool = False
    use_dora: bool = False
    learning_rate: float = 2e-4
    loraplus_lr_ratio: float | None = None  # LoRA+: the B matrices learn this many times faster
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    optimizer_type: str = "adamw"
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.0
    max_grad_norm: float | None = 1.0
    lr_scheduler_type: str = "linear"
    early_stopping_patience: int | None = None

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Hyperparameters:
        """Check and convert raw values (sampled or fixed) into hyperparameters."""
        unknown = set(values) - cls.names()
        if unknown:
            raise ConfigError(
                f"unknown LoRA hyperparameter(s) {sorted(unknown)}; known: {sorted(cls.names())}"
            )
        v = dict(values)
        for key in ("lora_r", "batch_size", "gradient_accumulation_steps"):
            if key in v:
                v[key] = _positive_int(key, v[key])
        if v.get("early_stopping_patience") is not None:
            v["early_stopping_patience"] = _positive_int(
                "early_stopping_patience", v["early_stopping_patience"]
            )
        if "target_modules" in v:
            v["target_modules"] = parse_target_modules(v["target_modules"])
        if v.get("optimizer_type", "adamw") not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer_type: {v['optimizer_type']!r} is not one of {list(OPTIMIZERS)}"
            )
        if v.get("lr_scheduler_type", "linear") not in LR_SCHEDULERS:
            raise ConfigError(
                f"lr_scheduler_type: {v['lr_scheduler_type']!r} is not one of {list(LR_SCHEDULERS)}"
            )
        for key in ("learning_rate", "lora_alpha"):
            if key in v and not float(v[key]) > 0:
                raise ConfigError(f"{key}: must be positive, got {v[key]}")
        if v.get("loraplus_lr_ratio") is not None:
            ratio = v["loraplus_lr_ratio"]
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio >= 1:
                raise ConfigError(f"loraplus_lr_ratio: a number >= 1 (or null for plain "
                                  f"LoRA), got {ratio!r}")  # fmt: skip
            v["loraplus_lr_ratio"] = float(ratio)
        return cls(**v)


def parse_target_modules(value: Any) -> tuple[str, ...] | str | None:
    """A list, a comma-separated string ('q_proj,v_proj') or 'all-linear'."""
    if value is None or value == "all-linear":
        return value
    if isinstance(value, str):
        names = tuple(n.strip() for n in value.split(",") if n.strip())
    elif isinstance(value, (list, tuple)):
        names = tuple(str(n) for n in value)
    else:
        raise ConfigError(f"target_modules: give module names, e.g. 'q_proj,v_proj', got {value!r}")
    if not names:
        raise ConfigError("target_modules: is empty")
    return names


def _positive_int(key: str, value: Any) -> int:
    return whole_number(value, key, 1, integral_floats=True)


def lora_config(hp: Hyperparameters, target_modules: Any) -> Any:
    """peft's LoraConfig for these hyperparameters."""
    from peft import LoraConfig, TaskType

    modules = hp.target_modules or target_modules
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,  # type: ignore[arg-type]  # peft scales by alpha / r; floats work
        lora_dropout=hp.lora_dropout,
        target_modules=list(modules) if isinstance(modules, tuple) else modules,
        use_rslora=hp.use_rslora,
        use_dora=hp.use_dora,
        bias="none",
    )


def build_optimizer(model: torch.nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    """Weight decay on matrices only (not on biases, norms or DoRA magnitudes); with
    ``loraplus_lr_ratio``, peft's LoRA+ optimizer instead (its own parameter groups: the B
    matrices at ``learning_rate * loraplus_lr_ratio``)."""
    import torch

    optimizer_class: type[torch.optim.Optimizer]
    options: dict[str, Any]
    if hp.optimizer_type == "sgd":
        optimizer_class, options = torch.optim.SGD, {"momentum": hp.momentum}
    else:
        optimizer_class = torch.optim.AdamW if hp.optimizer_type == "adamw" else torch.optim.Adam
        options = {"betas": (hp.beta1, hp.beta2)}
    if hp.loraplus_lr_ratio is not None:
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(
            model,  # type: ignore[arg-type]  # a PeftModel; typed as its base class here
            optimizer_class,
            lr=hp.learning_rate,
            loraplus_lr_ratio=hp.loraplus_lr_ratio,
            loraplus_weight_decay=hp.weight_decay,
            **options,
        )
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": hp.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return optimizer_class(groups, lr=hp.learning_rate, **options)


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, hp: Hyperparameters, max_steps: int
) -> Any:
    """transformers' schedule of that name, with ``warmup_ratio * max_steps`` warm-up steps."""
    from transformers import get_scheduler

    warmup = math.ceil(hp.warmup_ratio * max_steps)
    return get_scheduler(
        hp.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps
    )


def evaluate(model: Any, batches: list[Batch], device: str, amp_dtype: Any) -> tuple[float, float]:
    """Mean loss and next-token accuracy over the tokens that carry loss in the eval batches."""
    import torch

    from ugro_hpo.lora.batches import loss_and_accuracy

    model.eval()
    with torch.no_grad(), _autocast(device, amp_dtype):
        loss, accuracy = loss_and_accuracy(model, batches, device)
    model.train()
    return loss, accuracy


def _autocast(device: str, dtype: Any) -> Any:
    import contextlib

    import torch

    if dtype is None or not device.startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


@dataclass
class TrainingRun:
    """What a training run needs besides the model."""

    data: BatchSource
    max_steps: int
    evaluation_steps: list[int]
    seed: int
    device: str
    amp_dtype: Any = None
    checkpoint_every: int = 0  # save the training state every K steps (evaluation steps too)
    resume_from: str | None = None  # a checkpoint folder to continue from (`train_state`)


def train(
    model: Any,
    hp: Hyperparameters,
    run: TrainingRun,
    report: Callable[..., None],
) -> dict[str, float]:
    """Train for up to ``max_steps`` optimiser steps, evaluating and reporting as planned.

    The micro-batches of a step are weighed by the tokens that carry loss in each, so a step's
    loss is the mean over all of them (padded batches of unequal length, too). Returns the
    metrics of the best evaluation (early stopping keeps the best, as a final run would), plus
    the training throughput in real (non-padding) tokens per second.
    """
    import torch

    optimizer = build_optimizer(model, hp)
    scheduler = build_lr_scheduler(optimizer, hp, run.max_steps)
    scaler = torch.amp.GradScaler("cuda") if run.amp_dtype == torch.float16 else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    stream = run.data.stream(hp.batch_size, run.seed)
    eval_batches = run.data.eval_batches()
    evaluations = set(run.evaluation_steps)
    start = _resume(run, model, optimizer, scheduler, stream)
    best: dict[str, float] | None = start.best
    since_best, train_count, tokens = start.since_best, 0, start.tokens
    train_sum: Any = 0.0  # a tensor once training starts
    train_seconds = start.train_seconds
    model.train()
    for step in range(start.step + 1, run.max_steps + 1):
        started = time.perf_counter()
        micro = [stream.next() for _ in range(hp.gradient_accumulation_steps)]
        targets = sum(batch.targets for batch in micro)
        for batch in micro:
            with _autocast(run.device, run.amp_dtype):
                loss = model(**batch.to(run.device)).loss * (batch.targets / targets)
            (scaler.scale(loss) if scaler else loss).backward()
            # Summed on the device and read at evaluations: reading it every step would make
            # the CPU wait for the GPU at every step.
            train_sum = train_sum + loss.detach().float()
            tokens += batch.tokens
        train_count += 1
        if scaler:
            scaler.unscale_(optimizer)
        if hp.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, hp.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        train_seconds += time.perf_counter() - started
        if step not in evaluations:
            continue
        eval_loss, accuracy = evaluate(model, eval_batches, run.device, run.amp_dtype)
        metrics = {
            "eval_loss": eval_loss,
            "eval_perplexity": math.exp(min(eval_loss, 50.0)),
            "eval_token_accuracy": accuracy,
            "train_loss": float(train_sum) / max(train_count, 1),
        }
        train_sum, train_count = 0.0, 0
        if best is None or eval_loss < best["eval_loss"]:
            best, since_best = {**metrics, "best_step": float(step)}, 0
        else:
            since_best += 1
        if run.checkpoint_every and step % run.checkpoint_every == 0:
            from ugro_hpo.lora.train_state import LoopState, report_with_checkpoint

            loop = LoopState(step, step * hp.gradient_accumulation_steps, best, since_best,
                             tokens, train_seconds)  # fmt: skip
            report_with_checkpoint(report, metrics, model, optimizer, scheduler, loop)
        else:
            report(step, **metrics)
        if hp.early_stopping_patience and since_best >= hp.early_stopping_patience:
            break
    assert best is not None
    return {**best, "train_tokens_per_s": tokens / max(train_seconds, 1e-9)}


def _resume(run: TrainingRun, model: Any, optimizer: Any, scheduler: Any, stream: Any) -> Any:
    """Where the loop starts: a checkpoint's state (`train_state`), or step 0."""
    from ugro_hpo.lora.train_state import LoopState, load_train_state

    if not run.resume_from:
        return LoopState()
    from pathlib import Path

    return load_train_state(Path(run.resume_from), model, optimizer, scheduler, stream.next)
