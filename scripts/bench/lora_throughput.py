"""Training throughput of a LoRA trial vs a bare peft loop: same model, data, batch, steps.

    .venv/bin/python scripts/bench/lora_throughput.py [--steps 40] [--batch-size 16] [--repeats 5]
    .venv/bin/python scripts/bench/lora_throughput.py --parts sft,packing   # some parts only

Three parts, each on the tiny Llama of the default study (built on first use), every loop in
this process, interleaved (A B A B ...), timed around the training steps only:

- text: the trial's loop on blocks of the default text against a bare peft loop (forward,
  backward, AdamW step) on the same blocks (target: the trial >= 0.95 of the bare loop);
- sft: the same on instruction data (`dataset=pydoc_qa`, length-grouped padded batches, loss
  on the completions), the bare loop given the very batches the trial's stream makes;
- packing: the trial's loop on a skewed length distribution (most examples short, a few near
  the row length, as in chat data), packed (`dataset.packing=true`) against padded in
  length-grouped batches (what the trial does without packing), each step holding about the
  same number of real tokens; padded batches of examples in random order are shown too (what
  length grouping already saves).

Tokens per second count real tokens (padding excluded); each figure is the median of the
repeats (``--statistic best``: the fastest one). By default the seconds are wall-clock time;
``--clock cpu`` counts the process's CPU seconds instead, which other work on a shared machine
hardly changes (single-threaded torch: a step costs the same CPU time however busy the cores
are). Then each loop is timed whole (optimiser set-up included) and the trial evaluates only
one batch at its end. Writes outputs/bench/lora_throughput.json and prints the ratios. The bare
loop and the model set-up are shared with trial_memory.py and the GPU check
(scripts/gpu/probes.py).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time

import torch
from benchlib import ROOT, Result
from peft import get_peft_model

from ugro_hpo import compose
from ugro_hpo.components import instantiate
from ugro_hpo.config.plan import resolve
from ugro_hpo.lora.batches import Example, IndexStream, padded_batch
from ugro_hpo.lora.sft_data import PydocQA, SftBatches
from ugro_hpo.lora.training import Hyperparameters, TrainingRun, lora_config, train

PARTS = ("text", "sft", "packing")
SKEWED_SEQ_LEN = 256
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def bare_loop(model, blocks, batch_size: int, steps: int, lr: float) -> float:
    """The minimal peft training loop: forward, backward, AdamW step. Returns tokens/s.

    ``blocks`` is any batch source of the trial (text blocks, padded or packed examples): the
    loop takes the same batches the trial's stream gives, in the same order."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    stream = blocks.stream(batch_size, seed=0)
    device = next(model.parameters()).device.type
    model.train()
    tokens, started = 0, clock()
    for _ in range(steps):
        batch = stream.next()
        model(**batch.to(device)).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch.tokens
    return tokens / (clock() - started)


class OneEvalBatch:
    """A batch source whose evaluations run over one batch (the trial's loop timed whole)."""

    def __init__(self, data) -> None:
        self.data = data

    def stream(self, batch_size: int, seed: int):
        return self.data.stream(batch_size, seed)

    def eval_batches(self):
        return self.data.eval_batches()[:1]


def trial_loop(model, blocks, batch_size: int, steps: int, lr: float) -> float:
    """ugro_hpo's training loop with the trial's default knobs (clipping, schedule, reporting):
    its own figure (steps timed on the wall clock), or, on the CPU clock, timed whole."""
    hp = Hyperparameters(batch_size=batch_size, learning_rate=lr)
    if clock is CLOCKS["wall"]:
        run = TrainingRun(data=blocks, max_steps=steps, evaluation_steps=[steps], seed=0,
                          device="cpu")  # fmt: skip
        return train(model, hp, run, report=lambda step, **metrics: None)["train_tokens_per_s"]
    stream = blocks.stream(batch_size, seed=0)  # the batches the trial will see, counted
    tokens = sum(stream.next().tokens for _ in range(steps))
    run = TrainingRun(data=OneEvalBatch(blocks), max_steps=steps, evaluation_steps=[steps],
                      seed=0, device="cpu")  # fmt: skip
    started = clock()
    train(model, hp, run, report=lambda step, **metrics: None)
    return tokens / (clock() - started)


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


def skewed_examples(count: int, vocab: int, seed: int = 0) -> list[Example]:
    """Examples whose lengths are log-normal (median 40 tokens, a long tail cut at the row
    length), the first 40% of each a prompt without loss."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        n = min(SKEWED_SEQ_LEN, max(8, round(rng.lognormvariate(math.log(40), 0.9))))
        ids = tuple(rng.randrange(2, vocab) for _ in range(n))
        prompt = int(0.4 * n)
        examples.append(Example(ids, (-100,) * prompt + ids[prompt:]))
    return examples


class RandomlyPadded:
    """Padded batches of examples in random order, without length grouping (for comparison)."""

    def __init__(self, data: SftBatches) -> None:
        self.data = data

    def stream(self, batch_size: int, seed: int):
        indices, examples, pad = (
            IndexStream(len(self.data.train), seed),
            self.data.train,
            self.data.pad_id,
        )

        class Stream:
            def next(self):
                return padded_batch([examples[i] for i in indices.take(batch_size).tolist()], pad)

        return Stream()

    def eval_batches(self):
        return self.data.eval_batches()


def padding_share(data, batch_size: int, steps: int) -> float:
    """How much of what the model computes on is padding, over ``steps`` batches."""
    stream = data.stream(batch_size, seed=0)
    batches = [stream.next() for _ in range(steps)]
    return 1 - sum(b.tokens for b in batches) / sum(b.inputs["input_ids"].numel() for b in batches)


def interleaved(repeats: int, loops: dict[str, object]) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            figures[name].append(loop())  # type: ignore[operator]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    parser.add_argument("--statistic", choices=("median", "best"), default="median")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (a trial's resources.cpu)"
    )
    args = parser.parse_args()
    parts = args.parts.split(",")
    if set(parts) - set(PARTS):
        parser.error(f"--parts: choose from {','.join(PARTS)}")
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    objective = load_objective()
    tokenizer = objective.model.tokenizer()
    result = Result("lora_throughput")
    result.details = {"steps": args.steps, "batch_size": args.batch_size, "threads": args.threads,
                      "repeats": args.repeats, "statistic": args.statistic, "clock": args.clock}  # fmt: skip
    pick = statistics.median if args.statistic == "median" else max
    of = "" if args.statistic == "median" else f", fastest of {args.repeats}"
    of += ", CPU time" if args.clock == "cpu" else ""
    said = []
    lr, bs, steps = 5e-4, args.batch_size, args.steps

    def versus(data) -> dict[str, object]:
        return {"bare_peft_loop": lambda: bare_loop(fresh_model(objective), data, bs, steps, lr),
                "ugro_trial_loop": lambda: trial_loop(fresh_model(objective), data, bs, steps, lr)}  # fmt: skip

    for part, data, label in (
        ("text", lambda: objective.dataset.blocks(tokenizer), "LoRA trial loop / bare peft loop"),
        ("sft", lambda: PydocQA(seed=0).batches(tokenizer),
         "SFT trial loop (pydoc_qa, padded) / bare peft loop"),
    ):  # fmt: skip
        if part not in parts:
            continue
        figures = interleaved(args.repeats, versus(data()))
        medians = {k: statistics.median(v) for k, v in figures.items()}
        chosen = {k: pick(v) for k, v in figures.items()}
        ratio = chosen["ugro_trial_loop"] / chosen["bare_peft_loop"]
        result.add(f"{label}, tokens per second",
                   f"{ratio:.3f} ({chosen['ugro_trial_loop']:.0f} vs {chosen['bare_peft_loop']:.0f} tok/s{of})",
                   ">= 0.95", ratio >= 0.95)  # fmt: skip
        result.details[part] = {"tokens_per_s": figures, "median_tokens_per_s": medians, "ratio": ratio,
                                "median_ratio": medians["ugro_trial_loop"] / medians["bare_peft_loop"]}  # fmt: skip
        said.append(f"{part} {ratio:.3f}")
    if "packing" in parts:
        examples = skewed_examples(2000, len(tokenizer))
        mean = statistics.mean(len(e) for e in examples)
        held_out = examples[:32]
        rows = max(1, round(bs * mean / SKEWED_SEQ_LEN))  # about the real tokens of a padded step

        def skewed(packing: bool) -> SftBatches:
            return SftBatches(
                examples, held_out, [], tokenizer.pad_token_id, SKEWED_SEQ_LEN, packing
            )

        padded, packed = skewed(False), skewed(True)
        randomly = RandomlyPadded(padded)
        figures = interleaved(args.repeats, {
            "padded": lambda: trial_loop(fresh_model(objective), padded, bs, steps, lr),
            "packed": lambda: trial_loop(fresh_model(objective), packed, rows, steps, lr),
            "padded_random_order": lambda: trial_loop(fresh_model(objective), randomly, bs, steps, lr),
        })  # fmt: skip
        medians = {k: statistics.median(v) for k, v in figures.items()}
        chosen = {k: pick(v) for k, v in figures.items()}
        speedup = chosen["packed"] / chosen["padded"]
        shares = {name: padding_share(data, size, steps) for name, data, size in
                  (("padded", padded, bs), ("packed", packed, rows), ("padded_random_order", randomly, bs))}  # fmt: skip
        result.add("SFT packed / padded (length-grouped), real tokens per second, skewed lengths",
                   f"{speedup:.2f}x ({chosen['packed']:.0f} vs {chosen['padded']:.0f} tok/s{of}; "
                   f"padding {shares['packed']:.0%} vs {shares['padded']:.0%})")  # fmt: skip
        unsorted = chosen["packed"] / chosen["padded_random_order"]
        result.add("SFT packed / padded in random order (no length grouping), same lengths",
                   f"{unsorted:.2f}x ({chosen['padded_random_order']:.0f} tok/s; padding "
                   f"{shares['padded_random_order']:.0%})")  # fmt: skip
        result.details["packing"] = {
            "tokens_per_s": figures, "median_tokens_per_s": medians, "speedup": speedup,
            "examples": len(examples), "mean_length": mean, "seq_len": SKEWED_SEQ_LEN,
            "median_length": statistics.median(len(e) for e in examples),
            "padded_batch_examples": bs, "packed_batch_rows": rows, "padding_share": shares,
        }  # fmt: skip
        said.append(f"packed/padded {speedup:.2f}x")
    return result.finish(", ".join(said))


if __name__ == "__main__":
    sys.exit(main())
