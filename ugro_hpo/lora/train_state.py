"""A LoRA trial's training state on disk, so an interrupted trial continues where it stopped.

A checkpoint folder holds the adapter's weights and the optimiser's state (``tensors.pt``,
read back with ``torch.load(weights_only=True)``: a checkpoint from shared storage cannot run
code), and ``state.json``: the step, the LR scheduler's state, the random number generators'
states (torch's CPU and CUDA generators, Python's ``random``, NumPy's global generator), how
many batches the batch stream had given (a new stream with the same seed is moved on by that
many, so data continues where it stopped), and the loop's bookkeeping (the best evaluation so
far, the evaluations since it, tokens and seconds trained).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TENSORS = "tensors.pt"
STATE = "state.json"
FORMAT = 1


@dataclass
class LoopState:
    """What the loop needs besides the model, optimiser and scheduler to go on."""

    step: int = 0
    batches_drawn: int = 0
    best: dict[str, float] | None = None
    since_best: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def save_train_state(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, loop: LoopState
) -> Path:
    """Write the state into ``folder`` (created); returns it."""
    import torch
    from peft import get_peft_model_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "adapter": {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()},
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    torch.save(tensors, folder / TENSORS)
    state = {
        "format": FORMAT,
        "step": loop.step,
        "batches_drawn": loop.batches_drawn,
        "best": loop.best,
        "since_best": loop.since_best,
        "tokens": loop.tokens,
        "train_seconds": loop.train_seconds,
        "extra": loop.extra,
        "scheduler": _plain(scheduler.state_dict()),
        "python_rng": _plain(random.getstate()),
        "numpy_rng": _numpy_state(),
    }
    (folder / STATE).write_text(json.dumps(state), encoding="utf-8")
    return folder


def load_train_state(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, draw: Callable[[], Any]
) -> LoopState:
    """Put the state saved in ``folder`` back; ``draw`` takes one batch from the fresh stream
    (called once per batch the saved run had drawn). Raises ValueError on a folder that is not
    a checkpoint of this format."""
    import torch
    from peft import set_peft_model_state_dict

    state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{folder} is not a training checkpoint (format {FORMAT})")
    tensors = torch.load(folder / TENSORS, map_location="cpu", weights_only=True)
    set_peft_model_state_dict(model, tensors["adapter"])
    optimizer.load_state_dict(tensors["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for _ in range(int(state["batches_drawn"])):
        draw()
    # The generators last: moving the stream on must not disturb them.
    torch.set_rng_state(tensors["torch_rng"])
    if tensors["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda_rng"])
    random.setstate(_python_state(state["python_rng"]))
    if state.get("numpy_rng") is not None:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = state["numpy_rng"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    return LoopState(
        step=int(state["step"]),
        batches_drawn=int(state["batches_drawn"]),
        best=state["best"],
        since_best=int(state["since_best"]),
        tokens=int(state["tokens"]),
        train_seconds=float(state["train_seconds"]),
        extra=dict(state.get("extra") or {}),
    )


def _numpy_state() -> list[Any] | None:
    try:
        import numpy as np
    except ImportError:
        return None
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return [str(kind), np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)]


def _plain(value: Any) -> Any:
    """Tuples as lists, tensors and NumPy numbers as Python numbers: JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _python_state(value: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = value
    return (version, tuple(internal), gauss)


def report_with_checkpoint(
    report: Callable[..., None],
    metrics: dict[str, float],
    model: Any,
    optimizer: Any,
    scheduler: Any,
    loop: LoopState,
) -> None:
    """``report(step, checkpoint=folder, **metrics)`` with the state saved in a temporary
    folder, which Ray Tune copies into the study's storage; the folder is gone afterwards."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ugro-checkpoint-"))
    try:
        save_train_state(folder, model, optimizer, scheduler, loop)
        report(loop.step, checkpoint=str(folder), **metrics)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
