"""The LoRA training loop and the hyperparameters it understands.

A plain PyTorch loop (no Trainer): each knob maps to one visible place in the code, the loop
adds nothing between steps but the evaluations it reports, and its throughput is that of a
bare peft loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ugro_hpo.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from ugro_hpo.lora.data import TokenBlocks

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                 "constant_with_warmup", "inverse_sqrt", "cosine_with_min_lr")  # fmt: skip
EVAL_BATCH_SIZE = 16


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
        return cls(**v)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    if isinstance(value, bool) or float(value) != int(value) or int(value) < 1:
        raise ConfigError(f"{key}: must be a whole number >= 1, got {value!r}")
    return int(value)


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
    """Weight decay on matrices only (not on biases, norms or DoRA magnitudes)."""
    import torch

    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": hp.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if hp.optimizer_type == "sgd":
        return torch.optim.SGD(groups, lr=hp.learning_rate, momentum=hp.momentum)
    optimizer_class = torch.optim.AdamW if hp.optimizer_type == "adamw" else torch.optim.Adam
    return optimizer_class(groups, lr=hp.learning_rate, betas=(hp.beta1, hp.beta2))


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, hp: Hyperparameters, max_steps: int
) -> Any:
    """transformers' schedule of that name, with ``warmup_ratio * max_steps`` warm-up steps."""
    from transformers import get_scheduler

    warmup = math.ceil(hp.warmup_ratio * max_steps)
    return get_scheduler(
        hp.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps
    )


class BatchStream:
    """Training blocks in a seeded random order, reshuffled each epoch (same order for every trial)."""

    def __init__(self, blocks: torch.Tensor, batch_size: int, seed: int) -> None:
        import torch

        self.blocks = blocks
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(blocks), generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        import torch

        parts, count = [], 0
        while count < self.batch_size:
            if self.position == len(self.order):
                self.order = torch.randperm(len(self.blocks), generator=self.generator)
                self.position = 0
            take = min(self.batch_size - count, len(self.order) - self.position)
            parts.append(self.order[self.position : self.position + take])
            self.position += take
            count += take
        return self.blocks[torch.cat(parts)]


def evaluate(model: Any, blocks: torch.Tensor, device: str, amp_dtype: Any) -> float:
    """Mean next-token loss over the eval blocks."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), _autocast(device, amp_dtype):
        for start in range(0, len(blocks), EVAL_BATCH_SIZE):
            batch = blocks[start : start + EVAL_BATCH_SIZE].to(device)
            loss = model(input_ids=batch, labels=batch).loss
            tokens = batch.shape[0] * (batch.shape[1] - 1)
            total += float(loss) * tokens
            count += tokens
    model.train()
    return total / count


def _autocast(device: str, dtype: Any) -> Any:
    import contextlib

    import torch

    if dtype is None or not device.startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


@dataclass
class TrainingRun:
    """What a training run needs besides the model."""

    blocks: TokenBlocks
    max_steps: int
    evaluation_steps: list[int]
    seed: int
    device: str
    amp_dtype: Any = None


def train(
    model: Any,
    hp: Hyperparameters,
    run: TrainingRun,
    report: Callable[..., None],
) -> dict[str, float]:
    """Train for up to ``max_steps`` optimiser steps, evaluating and reporting as planned.

    Returns the metrics of the best evaluation (early stopping keeps the best, as a final
    run would), plus the training throughput.
    """
    import torch

    optimizer = build_optimizer(model, hp)
    scheduler = build_lr_scheduler(optimizer, hp, run.max_steps)
    scaler = torch.amp.GradScaler("cuda") if run.amp_dtype == torch.float16 else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    stream = BatchStream(run.blocks.train, hp.batch_size, run.seed)
    evaluations = set(run.evaluation_steps)
    best: dict[str, float] | None = None
    since_best, train_count, tokens = 0, 0, 0
    train_sum: Any = 0.0  # a tensor once training starts
    train_seconds = 0.0
    model.train()
    for step in range(1, run.max_steps + 1):
        started = time.perf_counter()
        for _ in range(hp.gradient_accumulation_steps):
            batch = stream.next().to(run.device)
            with _autocast(run.device, run.amp_dtype):
                loss = model(input_ids=batch, labels=batch).loss / hp.gradient_accumulation_steps
            (scaler.scale(loss) if scaler else loss).backward()
            # Summed on the device and read at evaluations: reading it every step would make
            # the CPU wait for the GPU at every step.
            train_sum = train_sum + loss.detach().float() * hp.gradient_accumulation_steps
            train_count += 1
            tokens += batch.numel()
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
        eval_loss = evaluate(model, run.blocks.eval, run.device, run.amp_dtype)
        metrics = {
            "eval_loss": eval_loss,
            "eval_perplexity": math.exp(min(eval_loss, 50.0)),
            "train_loss": float(train_sum) / max(train_count, 1),
        }
        train_sum, train_count = 0.0, 0
        report(step, **metrics)
        if best is None or eval_loss < best["eval_loss"]:
            best, since_best = {**metrics, "best_step": float(step)}, 0
        else:
            since_best += 1
        if hp.early_stopping_patience and since_best >= hp.early_stopping_patience:
            break
    assert best is not None
    return {**best, "train_tokens_per_s": tokens / max(train_seconds, 1e-9)}
