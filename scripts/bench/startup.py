"""Start-up: how long the commands that run nothing take, against importing Hydra alone.

    .venv/bin/python scripts/bench/startup.py [--repeats 5]

Each command runs ``--repeats`` times, interleaved, from process start to exit; the median
counts. Target: ``--help``, ``--cfg job`` and ``dry_run=true`` each within 1 s of
``python -c "import hydra"``. For scale, the row without a target imports the whole training
stack (torch, transformers, peft, ray.tune, mlflow, wandb), which these commands avoid.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from benchlib import PYTHON, Result, run_timed

BASELINE = "import hydra"
COMMANDS = {
    BASELINE: [PYTHON, "-c", "import hydra"],
    "--help": [PYTHON, "-m", "ugro_hpo", "--help"],
    "--cfg job": [PYTHON, "-m", "ugro_hpo", "--cfg", "job"],
    "dry_run=true": [PYTHON, "-m", "ugro_hpo", "dry_run=true"],
    "import the training stack": [
        PYTHON,
        "-c",
        "import torch, transformers, peft, ray.tune, mlflow, wandb",
    ],
}
MARGIN_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    run_timed(COMMANDS["--help"])  # warm the file cache once, uncounted
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            if name == "import the training stack" and len(times[name]) >= 2:
                continue  # slow and only for scale: twice is enough
            times[name].append(run_timed(command).wall_s)
    median = {name: statistics.median(t) for name, t in times.items()}
    base = median[BASELINE]
    result = Result("startup")
    result.add(f'python -c "{BASELINE}"', f"{base:.2f} s")
    for name in ("--help", "--cfg job", "dry_run=true"):
        result.add(f"python -m ugro_hpo {name}", f"{median[name]:.2f} s (+{median[name] - base:.2f})",
                   f"<= +{MARGIN_S:.0f} s", median[name] - base <= MARGIN_S)  # fmt: skip
    result.add("importing torch, transformers, peft, ray.tune, mlflow, wandb",
               f"{median['import the training stack']:.2f} s")  # fmt: skip
    result.details = {"repeats": args.repeats, "times_s": times, "median_s": median}
    worst = max(median[n] - base for n in ("--help", "--cfg job", "dry_run=true"))
    return result.finish(
        f"--help {median['--help']:.2f} s, --cfg job {median['--cfg job']:.2f} s, dry_run "
        f"{median['dry_run=true']:.2f} s vs import hydra {base:.2f} s (worst +{worst:.2f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
