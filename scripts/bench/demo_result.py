"""Run the README's demo command and write what it printed into the README.

    .venv/bin/python scripts/bench/demo_result.py            # run scripts/demo twice, update README
    .venv/bin/python scripts/bench/demo_result.py --no-readme

The first run starts from an empty outputs folder (so it builds the tiny model), the second
reuses the model with a fresh study (``resume=false``), as a user's second run would. Both are
the default study, untouched but for where they write. The README's "typical result" block
between its two marker comments is replaced whole with the second run's trials, counts and the
timings of both, dated, with the machine and how busy it was (the load average, sampled every
few seconds during each run: the study itself accounts for about one per core it uses). The
figures also go to outputs/bench/demo_result.json; ``--from-json`` renders the block again
from that file without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import OUT_DIR, ROOT, machine

START, END = "<!-- demo-result:start -->", "<!-- demo-result:end -->"
SAMPLE_S = 5.0


def run_demo(outputs: Path, *overrides: str) -> dict[str, Any]:
    """scripts/demo with ``outputs_dir``: its wall time, the load before it, and what it wrote."""
    import csv
    import threading

    import yaml

    loads: list[float] = []
    finished = threading.Event()

    def sample() -> None:
        while not finished.wait(SAMPLE_S):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    done = subprocess.run([str(ROOT / "scripts" / "demo"), f"outputs_dir={outputs}", *overrides],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    seconds = time.monotonic() - started
    finished.set()
    sampler.join()
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"scripts/demo failed with exit code {done.returncode}")
    runs = sorted((outputs / "ugro-demo").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    run_dir = runs[-1].parent
    summary = json.loads(runs[-1].read_text())
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    with (run_dir / "trials.csv").open(newline="") as file:
        keep = ("number", "state", "lora_r", "lora_alpha", "learning_rate", "batch_size",
                "eval_loss", "eval_perplexity")  # fmt: skip
        trials = [{k: row.get(k, "") for k in keep} for row in csv.DictReader(file)]
    load = sum(loads) / len(loads) if loads else os.getloadavg()[0]
    return {"seconds": round(seconds, 1), "load": round(load, 1), "seed": config["seed"],
            "counts": summary["counts"], "trials": trials}  # fmt: skip


def _params(row: dict[str, str]) -> str:
    def number(key: str, fmt: str) -> str:
        return format(float(row[key]), fmt) if row.get(key) else "?"

    return (f"r {row.get('lora_r', '?')}, alpha {number('lora_alpha', '.1f')}, "
            f"lr {number('learning_rate', '.1e')}, batch {row.get('batch_size', '?')}")  # fmt: skip


def block(data: dict[str, Any]) -> str:
    """The README's block, rendered from the data of `run_demo` (kept in the block, so a test
    can check that the table is this rendering of a run's data)."""
    where, first, second = data["machine"], data["first"], data["second"]
    cores = where["cores"] or 1

    def condition(run: dict[str, Any]) -> str:
        load = run["load"]
        busy = (
            "a machine otherwise idle"
            if load <= cores + 0.5
            else "a machine also busy with other work"
        )
        return f"load average {load:g} on {cores} cores: {busy}"

    counts, rows = second["counts"], second["trials"]
    complete = sorted(
        (r for r in rows if r["state"] == "complete"), key=lambda r: float(r["eval_loss"])
    )
    lines = [
        f"Measured by `scripts/bench/demo_result.py` on {where['date']} ({where['cpu']}, {cores} "
        f"cores, {where['gpu'] or 'no GPU'}): the first run of `scripts/demo` took "
        f"{first['seconds'] / 60:.1f} minutes, building the model included ({condition(first)}), "
        f"a second one {second['seconds'] / 60:.1f} minutes ({condition(second)}). The second "
        f"printed (seed {second['seed']}):",
        "",
        "| trial | parameters | eval loss | eval perplexity |",
        "|---|---|---|---|",
    ]

    def line(label: str, row: dict[str, str]) -> str:
        perplexity = f"{float(row['eval_perplexity']):.0f}" if row.get("eval_perplexity") else ""
        return f"| {label} ({row['number']}) | {_params(row)} | {float(row['eval_loss']):.3f} | {perplexity} |"

    if complete:
        lines.append(line("best", complete[0]))
    default = next((r for r in complete if r["number"] == "0"), None)
    if default is not None and default is not complete[0]:
        lines.append(line("defaults", default))
    if len(complete) > 1 and complete[-1] is not default:
        lines.append(line("worst complete", complete[-1]))
    lines += [
        "",
        f"{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned (stopped early by "
        f"ASHA), {counts.get('infeasible', 0)} infeasible (proposals that violated a constraint, "
        "never trained). Which trials ASHA stops depends on which finish first, so the counts "
        "and the best trial can differ between runs and machines.",
        "",
        f"<!-- demo-data: {json.dumps(data, sort_keys=True)} -->",
    ]
    return "\n".join(lines)


def readme_data(readme: str) -> dict[str, Any] | None:
    """The data the README's block was rendered from, or None when it has none."""
    if START not in readme or "<!-- demo-data: " not in readme:
        return None
    inside = readme.split(START, 1)[1].split(END, 1)[0]
    return json.loads(inside.split("<!-- demo-data: ", 1)[1].rsplit(" -->", 1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--no-readme", action="store_true", help="write the JSON only")
    parser.add_argument("--from-json", action="store_true", help="render the last run's JSON again")
    args = parser.parse_args()
    data = json.loads((OUT_DIR / "demo_result.json").read_text()) if args.from_json else measure()
    text = block(data)
    print(text)
    if not args.no_readme:
        return write_readme(text)
    return 0


def measure() -> dict[str, Any]:
    """Both runs of the demo, and the machine they ran on (written to the JSON too)."""
    with tempfile.TemporaryDirectory(prefix="ugro-demo-") as scratch:
        outputs = Path(scratch) / "outputs"
        first = run_demo(outputs)
        second = run_demo(outputs, "resume=false")
    data = {"machine": machine(), "first": {k: first[k] for k in ("seconds", "load")},
            "second": second}  # fmt: skip
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "demo_result.json").write_text(json.dumps(data, indent=2))
    return data


def write_readme(text: str) -> int:
    readme = ROOT / "README.md"
    content = readme.read_text()
    if START not in content or END not in content:
        print(f"README.md lacks the {START} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print("README.md: demo result updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
