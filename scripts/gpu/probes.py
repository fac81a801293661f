"""The parts of gpu-check that run inside the project's venv, each printing one JSON line.

    .venv/bin/python scripts/gpu/probes.py model --cache DIR [--build]
    .venv/bin/python scripts/gpu/probes.py trials --storage URL --study NAME
    .venv/bin/python scripts/gpu/probes.py four-bit --model DIR
    .venv/bin/python scripts/gpu/probes.py throughput [--size tiny|larger] [--steps 200] ...

Each runs in a process of its own so gpu-check can give it a timeout and a clean GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# A Llama built from a config like the tiny one, big enough (about 100M parameters) that the
# GPU, not Python, sets the pace; untrained (tokens per second do not depend on the weights).
LARGER = ("model.hidden_size=1024", "model.intermediate_size=2816", "model.num_hidden_layers=8",
          "model.num_attention_heads=16", "model.num_key_value_heads=4", "model.pretrain_steps=0")  # fmt: skip


def model(cache: str, build: bool) -> dict:
    """Where the default study's tiny Llama lives in ``cache`` (built there first if asked),
    and where the larger one of the throughput check goes (never built here)."""
    from ugro_hpo import compose
    from ugro_hpo.components import instantiate
    from ugro_hpo.config.plan import resolve

    tiny, larger = (
        instantiate(resolve(compose(f"model.cache_dir={cache}", *more))["model"], "model")
        for more in ((), LARGER)
    )
    started = time.time()
    if build:
        tiny.prepare(gpu=0)
    return {"path": tiny.name_or_path, "seconds": round(time.time() - started, 1),
            "larger": larger.name_or_path}  # fmt: skip


def trials(storage: str, study: str) -> dict:
    """Each trial's state, start and end (seconds since the epoch) from the Optuna storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "start": t.datetime_start.timestamp() if t.datetime_start else None,
            "end": t.datetime_complete.timestamp() if t.datetime_complete else None,
        }
        for t in optuna.load_study(study_name=study, storage=storage).trials
    ]
    return {"trials": rows}


def four_bit(path: str) -> dict:
    """Load the tiny Llama in 4 bits with bitsandbytes, then train a few LoRA steps on it."""
    import bitsandbytes as bnb
    import torch
    from peft import get_peft_model

    from ugro_hpo.lora.data import PydocTopics
    from ugro_hpo.lora.models import PretrainedModel
    from ugro_hpo.lora.training import Hyperparameters, TrainingRun, lora_config, train

    quantized = PretrainedModel(path, quantization="4bit", gradient_checkpointing=True,
                                target_modules=ALL_LINEAR)  # fmt: skip
    base, tokenizer = quantized.load("cuda")
    four_bit_layers = sum(isinstance(m, bnb.nn.Linear4bit) for m in base.modules())
    hp = Hyperparameters(batch_size=4)
    peft_model = get_peft_model(base, lora_config(hp, quantized.target_modules))
    blocks = PydocTopics(seq_len=32, max_train_chunks=32, max_eval_chunks=4).blocks(tokenizer)
    run = TrainingRun(data=blocks, max_steps=5, evaluation_steps=[5], seed=0, device="cuda",
                      amp_dtype=quantized.amp_dtype("cuda"))  # fmt: skip
    metrics = train(peft_model, hp, run, report=lambda step, **m: None)
    return {
        "bitsandbytes": bnb.__version__,
        "linear4bit_layers": four_bit_layers,
        "steps": 5,
        "eval_loss": metrics["eval_loss"],
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }


def throughput(size: str, steps: int, batch_size: int, repeats: int) -> dict:
    """Tokens/s of the trial's training loop against a bare peft loop on the GPU, with the
    benchmark's own pieces (scripts/bench/lora_throughput.py): same model, adapters, batch.

    The benchmark's `trial_loop` trains on the CPU only (its device is fixed), so the trial side
    calls the trial's `train` directly with device "cuda", as a trial on a GPU does. Its
    `bare_loop` takes no device: it gets its blocks already on the GPU and runs under the same
    autocast as the trial (the tiny model keeps float32 weights and computes in bf16/fp16). Its
    own clock stops before the GPU has finished, so it is timed here around the call, up to a
    synchronize.
    """
    sys.path.insert(0, str(ROOT / "scripts" / "bench"))
    import torch
    from lora_throughput import bare_loop, fresh_model, load_objective

    from ugro_hpo import compose
    from ugro_hpo.components import instantiate
    from ugro_hpo.config.plan import resolve
    from ugro_hpo.lora.training import Hyperparameters, TrainingRun, train

    if size == "tiny":
        objective = load_objective()  # the default study's model, in outputs/models
    else:
        cfg = compose(f"model.cache_dir={ROOT / 'outputs' / 'models'}", *LARGER)
        objective = instantiate(resolve(cfg)["objective"], "objective")
        objective.prepare({"gpu": 0})  # built once (no pre-training), then found in the cache
    base, tokenizer = objective.model.load("cpu")
    parameters = sum(p.numel() for p in base.parameters())
    del base
    blocks = objective.dataset.blocks(tokenizer)
    on_gpu = dataclasses.replace(blocks, train=blocks.train.cuda(), eval=blocks.eval.cuda())
    amp = objective.model.amp_dtype("cuda") or torch.bfloat16
    lr = 5e-4

    def bare() -> float:
        model = fresh_model(objective).cuda()
        torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast(device_type="cuda", dtype=amp):
            bare_loop(model, on_gpu, batch_size, steps, lr)
        torch.cuda.synchronize()
        return steps * batch_size * blocks.seq_len / (time.perf_counter() - started)

    def trial() -> float:
        hp = Hyperparameters(batch_size=batch_size, learning_rate=lr)
        run = TrainingRun(data=blocks, max_steps=steps, evaluation_steps=[steps], seed=0,
                          device="cuda", amp_dtype=amp)  # fmt: skip
        metrics = train(fresh_model(objective).cuda(), hp, run, lambda step, **m: None)
        return metrics["train_tokens_per_s"]

    bare(), trial()  # warm-up: kernels, cuBLAS workspaces, the allocator's pools
    figures: dict[str, list[float]] = {"bare_peft_loop": [], "ugro_trial_loop": []}
    for _ in range(repeats):  # interleaved, as in the benchmark
        figures["bare_peft_loop"].append(bare())
        figures["ugro_trial_loop"].append(trial())
    medians = {name: statistics.median(values) for name, values in figures.items()}
    return {
        "size": size,
        "parameters": parameters,
        "tokens_per_s": figures,
        "median_tokens_per_s": medians,
        "ratio": medians["ugro_trial_loop"] / medians["bare_peft_loop"],
        "autocast_dtype": str(amp).removeprefix("torch."),
        "device": torch.cuda.get_device_name(0),
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": blocks.seq_len,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    commands = parser.add_subparsers(dest="probe", required=True)
    found = commands.add_parser("model")
    found.add_argument("--cache", required=True)
    found.add_argument("--build", action="store_true")
    listed = commands.add_parser("trials")
    listed.add_argument("--storage", required=True)
    listed.add_argument("--study", required=True)
    commands.add_parser("four-bit").add_argument("--model", required=True)
    timed = commands.add_parser("throughput")
    timed.add_argument("--size", choices=("tiny", "larger"), default="tiny")
    timed.add_argument("--steps", type=int, default=200)
    timed.add_argument("--batch-size", type=int, default=16)
    timed.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.probe == "model":
        result = model(args.cache, args.build)
    elif args.probe == "trials":
        result = trials(args.storage, args.study)
    elif args.probe == "four-bit":
        result = four_bit(args.model)
    else:
        result = throughput(args.size, args.steps, args.batch_size, args.repeats)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
