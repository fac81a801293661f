"""Training throughput of a LoRA trial vs a bare peft loop: same model, data, batch, steps.

    .venv/bin/python scripts/bench/lora_throughput.py [--steps 40] [--batch-size 16] [--repeats 5]

Both loops run in this process, interleaved (A B A B ...), on the tiny Llama of the default
study (built on first use). Tokens per second are timed around the training steps only; the
trial's evaluation (once, at the end) is outside the timed part in both. Writes
outputs/bench/lora_throughput.json and prints the ratio (target >= 0.95). The bare loop and
the model set-up are shared with trial_memory.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from benchlib import ROOT, Result
from peft import get_peft_model

from ugro_hpo import compose
from ugro_hpo.config.components import instantiate
from ugro_hpo.config.plan import resolve
from ugro_hpo.lora.training import BatchStream, Hyperparameters, TrainingRun, lora_config, train


def bare_loop(model, blocks, batch_size: int, steps: int, lr: float) -> float:
    """The minimal peft training loop: forward, backward, AdamW step. Returns tokens/s."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    stream = BatchStream(blocks.train, batch_size, seed=0)
    model.train()
    tokens, started = 0, time.perf_counter()
    for _ in range(steps):
        batch = stream.next()
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch.numel()
    return tokens / (time.perf_counter() - started)


def trial_loop(model, blocks, batch_size: int, steps: int, lr: float) -> float:
    """ugro_hpo's training loop with the trial's default knobs (clipping, schedule, reporting)."""
    hp = Hyperparameters(batch_size=batch_size, learning_rate=lr)
    run = TrainingRun(
        blocks=blocks, max_steps=steps, evaluation_steps=[steps], seed=0, device="cpu"
    )
    return train(model, hp, run, report=lambda step, **metrics: None)["train_tokens_per_s"]


def load_objective():
    """The default study's objective, prepared (the tiny model is built on first use)."""
    cfg = compose(f"model.cache_dir={ROOT / 'outputs' / 'models'}")  # from any working directory
    objective = instantiate(resolve(cfg)["objective"], "objective")
    objective.prepare({"gpu": 0})
    return objective


def fresh_model(objective):
    """The base model with the default trial's LoRA adapters (r 16, alpha 32, dropout 0.1)."""
    base, _ = objective.model.load("cpu")
    torch.manual_seed(0)
    hp = Hyperparameters(lora_r=16, lora_alpha=32.0, lora_dropout=0.1)
    return get_peft_model(base, lora_config(hp, objective.model.target_modules))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (a trial's resources.cpu)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    objective = load_objective()
    _, tokenizer = objective.model.load("cpu")
    blocks = objective.dataset.blocks(tokenizer)
    results: dict[str, list[float]] = {"bare_peft_loop": [], "ugro_trial_loop": []}
    for _ in range(args.repeats):
        results["bare_peft_loop"].append(
            bare_loop(fresh_model(objective), blocks, args.batch_size, args.steps, 5e-4)
        )
        results["ugro_trial_loop"].append(
            trial_loop(fresh_model(objective), blocks, args.batch_size, args.steps, 5e-4)
        )
    medians = {k: statistics.median(v) for k, v in results.items()}
    ratio = medians["ugro_trial_loop"] / medians["bare_peft_loop"]
    result = Result("lora_throughput")
    result.add("LoRA trial loop / bare peft loop, tokens per second",
               f"{ratio:.3f} ({medians['ugro_trial_loop']:.0f} vs {medians['bare_peft_loop']:.0f} tok/s)",
               ">= 0.95", ratio >= 0.95)  # fmt: skip
    result.details = {"tokens_per_s": results, "median_tokens_per_s": medians, "ratio": ratio,
                      "steps": args.steps, "batch_size": args.batch_size, "seq_len": blocks.seq_len,
                      "threads": args.threads, "repeats": args.repeats}  # fmt: skip
    return result.finish(
        f"trial loop {medians['ugro_trial_loop']:.0f} tok/s vs bare peft loop "
        f"{medians['bare_peft_loop']:.0f} tok/s, ratio {ratio:.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
