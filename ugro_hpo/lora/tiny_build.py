"""Building the tiny Llama offline: a byte-level BPE tokenizer and a short pre-training, both
on the docstrings of Python's standard library, saved where `TinyLlama` loads it from."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from ugro_hpo.lora.quiet import quiet_transformers

log = logging.getLogger(__name__)


def pretraining_corpus() -> list[str]:
    """Docstrings of Python's standard library: offline everywhere, and not the fine-tuning text."""
    import ast
    import sysconfig

    texts = []
    for source in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    texts.append(doc)
    if len(texts) < 100:
        raise RuntimeError("too few standard-library docstrings to pre-train the tiny model")
    return texts


def build_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


PROGRESS_EVERY_S = 15.0
"""How often the tiny model's build says how far it is (a first run must not look hung)."""


def build_tiny_llama(path: Path, **settings: Any) -> None:
    """Build the tiny Llama, pre-train it on docstrings, and save model and tokenizer at ``path``."""
    import time

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ugro_hpo.lora.data import to_blocks

    quiet_transformers()
    started = time.time()
    texts = pretraining_corpus()
    tokenizer = build_tokenizer(texts, settings["vocab_size"])
    log.info("tiny Llama: tokenizer trained on %d docstrings (%.0f s); pre-training next",
             len(texts), time.time() - started)  # fmt: skip
    torch.manual_seed(settings["seed"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings["hidden_size"],
        intermediate_size=settings["intermediate_size"],
        num_hidden_layers=settings["num_hidden_layers"],
        num_attention_heads=settings["num_attention_heads"],
        num_key_value_heads=settings["num_key_value_heads"],
        max_position_embeddings=settings["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    blocks = to_blocks(texts, tokenizer, settings["pretrain_seq_len"], None)
    steps, batch = settings["pretrain_steps"], settings["pretrain_batch_size"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["pretrain_lr"], weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        return (
            min(1.0, (step + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1)))  # pretrain_steps=0 too
        )

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(settings["seed"])
    model.train()
    loss_value = float("nan")
    said = training_started = time.time()
    for step in range(steps):
        if step and time.time() - said >= PROGRESS_EVERY_S:
            said = time.time()
            left = (said - training_started) / step * (steps - step)
            log.info("tiny Llama: pre-training step %d/%d, loss %.2f, about %.0f s left",
                     step, steps, loss_value, left)  # fmt: skip
        rows = torch.randint(0, len(blocks), (batch,), generator=generator)
        batch_ids = blocks[rows]
        loss = model(input_ids=batch_ids, labels=batch_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())

    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    info = {**settings, "pretrain_final_loss": loss_value, "pretrain_seconds": round(time.time() - started, 1),
            "corpus": "Python standard library docstrings", "blocks": len(blocks)}  # fmt: skip
    (staging / "ugro_pretraining.json").write_text(json.dumps(info, indent=2))
    staging.rename(path)
    log.info(
        "built the tiny Llama in %.0f s (pre-training loss %.2f): %s",
        info["pretrain_seconds"],
        loss_value,
        path,
    )
