"""Early stopping: the default LoRA study with ASHA against the same study with every trial
run to the end (FIFO), on the same trial budget.

    .venv/bin/python scripts/bench/early_stopping.py [--trials 36] [--max-steps 40]
        [--eval-every 5] [--seq-len 64] [--search random]

Both studies are the default study (tiny Llama, pydoc corpus, default search space, default
ASHA settings, seed 42) with tracking and the report off, made cheaper per step (64-token
sequences) so that enough trials fit in a few minutes; the tiny model is built once into
outputs/models and reused. Random search by default, so both studies try the same
configurations and only the scheduler differs (a model-based search learns from the stopped
trials and proposes different ones: ``--search auto`` measures that combination).
Training steps spent = the sum of every trial's last step (an infeasible trial trains none).
Target: ASHA spends <= 50% of FIFO's steps for a best eval_loss within 2% of FIFO's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, Result, start_ray

from ugro_hpo import compose, run

TARGET_STEPS = 0.50
TARGET_LOSS = 0.02


def study(scheduler: str, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    import optuna

    name = f"early-stopping-{scheduler}"
    cfg = compose(
        f"outputs_dir={scratch}", f"model.cache_dir={ROOT / 'outputs' / 'models'}",
        f"scheduler={scheduler}", "tracking=none", "report=false", f"n_trials={args.trials}",
        f"max_steps={args.max_steps}", f"eval_every={args.eval_every}",
        f"dataset.seq_len={args.seq_len}", f"search={args.search}", f"study_name={name}",
    )  # fmt: skip
    started = time.time()
    result = run(cfg, run_dir=str(scratch / name), echo=False)
    wall = time.time() - started
    trials_done = optuna.load_study(study_name=name, storage=result.summary["storage"]).trials
    steps = sum(int(t.user_attrs.get("last_step", 0)) for t in trials_done)
    counts = result.summary["counts"]
    return {
        "steps": steps,
        "best_eval_loss": float(result.summary["best"]["metrics"]["eval_loss"]),
        "wall_s": round(wall, 1),
        "complete": counts["complete"],
        "pruned": counts["pruned"],
        "infeasible": counts["infeasible"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--trials", type=int, default=36)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--search", default="random")
    args = parser.parse_args()
    start_ray(2)
    with tempfile.TemporaryDirectory() as scratch:
        asha = study("asha", args, Path(scratch))
        fifo = study("fifo", args, Path(scratch))
    share = asha["steps"] / fifo["steps"]
    gap = (asha["best_eval_loss"] - fifo["best_eval_loss"]) / fifo["best_eval_loss"]
    result = Result("early_stopping")
    result.add(f"training steps, ASHA / FIFO ({args.search} search, {args.trials} trials)",
               f"{share:.0%} ({asha['steps']} / {fifo['steps']})", f"<= {TARGET_STEPS:.0%}",
               share <= TARGET_STEPS)  # fmt: skip
    result.add("best eval_loss, ASHA vs FIFO",
               f"{asha['best_eval_loss']:.4f} vs {fifo['best_eval_loss']:.4f} ({gap:+.1%})",
               f"within {TARGET_LOSS:.0%}", gap <= TARGET_LOSS)  # fmt: skip
    result.add("study wall time, ASHA / FIFO", f"{asha['wall_s']:.0f} s / {fifo['wall_s']:.0f} s")
    result.details = {**vars(args), "asha": asha, "fifo": fifo}
    return result.finish(
        f"ASHA spent {share:.0%} of FIFO's training steps ({asha['steps']} vs {fifo['steps']}); "
        f"best eval_loss {asha['best_eval_loss']:.4f} vs {fifo['best_eval_loss']:.4f} ({gap:+.1%})"
    )


if __name__ == "__main__":
    sys.exit(main())
