"""Packing: several examples per row, with no attention and no loss across their boundaries.

Rows carry ``position_ids`` that restart at 0 for every example and no attention mask. From
such position ids transformers' masking utilities build a block-diagonal causal mask (eager,
SDPA and flex attention), and flash attention runs its variable-length kernel: each token
attends only to earlier tokens of its own example. The first label of every example is
ignored, so no token is predicted from the example before it. What is left of a row after
its examples is a padding segment of its own, which carries no loss.

Which models keep packed examples apart: the causal LMs transformers ships whose attention
masks come from those utilities and whose layers are all attention layers (Llama, Mistral,
Qwen, Gemma, Phi-3, GPT-NeoX, OLMo and most others). That is checked on the driver from the
model's config (`packing_problem`): hybrids with Mamba, linear-attention or convolution layers
are refused, as their state would carry one example into the next. Each worker then checks the
loaded model once (`check_packing`): a packed pair of examples must give the logits each gives
alone, which catches a model that computes its positions itself (OPT, from the attention
mask).
"""

from __future__ import annotations

import bisect
import importlib
from collections.abc import Sequence
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.lora.batches import IGNORE, Example

# Relative change of the logits allowed between a packed example and the same one alone: what
# rounding gives (float32 weights: about 1e-7; half-precision or 4-bit: about 1e-3), far less
# than a leak (attention across examples changes them by tens of percent).
PROBE_TOLERANCE = {"float32": 1e-4, "half": 0.02}
ATTENTION_LAYERS = frozenset(
    {"attention", "full_attention", "sliding_attention", "chunked_attention"}
)


def pack(examples: Sequence[Example], seq_len: int, pad_id: int) -> tuple[dict[str, Any], Any]:
    """Rows of ``seq_len`` tokens holding the examples (best fit, longest first), and the real
    tokens in each row. Returns ({input_ids, labels, position_ids}, tokens per row)."""
    import torch

    rows: list[list[Example]] = []
    free: list[tuple[int, int]] = []  # (space left, row), sorted
    for example in sorted(examples, key=len, reverse=True):
        at = bisect.bisect_left(free, (len(example), -1))
        if at == len(free):
            rows.append([example])
            left, row = seq_len - len(example), len(rows) - 1
        else:
            left, row = free.pop(at)
            rows[row].append(example)
            left -= len(example)
        if left > 0:
            bisect.insort(free, (left, row))
    ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), seq_len), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), seq_len), dtype=torch.long)
    tokens = torch.zeros(len(rows), dtype=torch.long)
    for r, members in enumerate(rows):
        start = 0
        for example in members:
            n = len(example)
            ids[r, start : start + n] = torch.tensor(example.input_ids)
            labels[r, start : start + n] = torch.tensor(example.labels)
            labels[r, start] = IGNORE  # never predicted from the example before it
            positions[r, start : start + n] = torch.arange(n)
            start += n
        positions[r, start:] = torch.arange(seq_len - start)  # padding: a segment of its own
        tokens[r] = start
    return {"input_ids": ids, "labels": labels, "position_ids": positions}, tokens


def packing_problem(config: Any) -> str | None:
    """Why packed examples would see each other in this model (from its config), or None."""
    from transformers.models.auto.configuration_auto import model_type_to_module_name
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = getattr(config, "model_type", None)
    if getattr(config, "auto_map", None):
        return f"model type {model_type!r} runs its own code, whose attention masks are unknown"
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return f"model type {model_type!r} is not a causal LM that transformers ships"
    module_name = model_type_to_module_name(model_type)
    try:
        module = importlib.import_module(
            f"transformers.models.{module_name}.modeling_{module_name}"
        )
    except ImportError as exc:
        return f"transformers cannot import the {model_type!r} model ({exc})"
    if not hasattr(module, "create_causal_mask"):
        return (
            f"the {model_type!r} model does not build its attention mask from position ids, so "
            "packed examples would attend to each other"
        )
    kinds = getattr(config, "layer_types", None) or getattr(config, "layers_block_type", None)
    others = sorted(set(kinds or ()) - ATTENTION_LAYERS)
    if others:
        return (
            f"the {model_type!r} model has {', '.join(others)} layers, whose state would carry "
            "one packed example into the next"
        )
    return None


def refuse_unpackable(config: Any, model_name: str) -> None:
    """The one-line refusal of ``dataset.packing=true`` for a model that cannot keep packed
    examples apart."""
    problem = packing_problem(config)
    if problem:
        raise ConfigError(
            f"dataset.packing=true: {problem} (model {model_name}); set dataset.packing=false "
            "to pad instead"
        )


def check_packing(model: Any, device: str, vocab_size: int) -> None:
    """On the loaded model: two short examples packed in one row must give the logits each
    gives alone; raise ConfigError otherwise."""
    import torch

    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randint(2, vocab_size, (1, n), generator=generator) for n in (7, 5))
    positions = torch.cat([torch.arange(7), torch.arange(5)]).unsqueeze(0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        alone = model(input_ids=second.to(device)).logits.float()
        packed = model(input_ids=torch.cat([first, second], 1).to(device),
                       position_ids=positions.to(device)).logits.float()[:, 7:]  # fmt: skip
    model.train(was_training)
    change = float((packed - alone).abs().mean() / alone.abs().mean().clamp_min(1e-6))
    exact = next(model.parameters()).dtype == torch.float32
    if change > PROBE_TOLERANCE["float32" if exact else "half"]:
        raise ConfigError(
            f"dataset.packing=true: this model lets packed examples see each other (the second "
            f"of two packed examples changed its logits by {change:.0%}); set "
            "dataset.packing=false to pad instead"
        )
