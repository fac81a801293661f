"""Scoring what the fine-tuned model writes: greedy completions of held-out prompts.

``eval_exact_match`` is the share of completions equal to the reference, and
``eval_token_f1`` the mean word-overlap F1 between them (as in SQuAD), both after
normalising case, punctuation and whitespace.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ugro_hpo.lora.sft_formats import Prompt

GENERATE_BATCH_SIZE = 8
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise(text: str) -> str:
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalise(prediction) == normalise(reference))


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalise(prediction).split(), normalise(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def generate(model: Any, tokenizer: Any, prompts: Sequence[Prompt], device: str,
             max_new_tokens: int) -> list[str]:  # fmt: skip
    """Greedy completions of ``prompts`` (left-padded batches), special tokens removed."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    texts: list[str] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(prompts), GENERATE_BATCH_SIZE):
        part = prompts[start : start + GENERATE_BATCH_SIZE]
        width = max(len(p.input_ids) for p in part)
        ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for row, prompt in enumerate(part):
            ids[row, width - len(prompt.input_ids) :] = torch.tensor(prompt.input_ids)
            mask[row, width - len(prompt.input_ids) :] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=pad)  # fmt: skip
        texts += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    model.train(was_training)
    return [t.strip() for t in texts]


def generation_metrics(model: Any, tokenizer: Any, prompts: Sequence[Prompt], device: str,
                       max_new_tokens: int) -> dict[str, float]:  # fmt: skip
    """Exact match and token F1 of greedy completions against the references."""
    written = generate(model, tokenizer, prompts, device, max_new_tokens)
    pairs = list(zip(written, (p.reference for p in prompts), strict=True))
    return {
        "eval_exact_match": sum(exact_match(w, r) for w, r in pairs) / len(pairs),
        "eval_token_f1": sum(token_f1(w, r) for w, r in pairs) / len(pairs),
    }
