"""Write the README's Performance table from the benchmarks' JSON in outputs/bench/.

    .venv/bin/python scripts/bench/readme_table.py

The table sits between two marker comments in README.md and is replaced whole; a benchmark
without JSON yet is listed as not run.
"""

from __future__ import annotations

import json
import sys

from benchlib import OUT_DIR, ROOT

BENCHMARKS = ("overhead", "startup", "fixed_cost", "sample_efficiency", "ask_latency", "infeasible_learning", "early_stopping", "lora_throughput",
              "trial_memory", "hydra_sweeper", "sweeper_fixed_cost", "multi_fidelity")  # fmt: skip
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def table() -> str:
    lines = ["| Benchmark | Measure | Result | Target | Met |", "|---|---|---|---|---|"]
    machines = set()
    for name in BENCHMARKS:
        path = OUT_DIR / f"{name}.json"
        if not path.exists():
            lines.append(f"| `{name}` | not run yet | | | |")
            continue
        data = json.loads(path.read_text())
        m = data["machine"]
        machines.add(f"{m['date']}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']:g} GB RAM, "
                     f"{m['gpu'] or 'no GPU'}, Python {m['python']}")  # fmt: skip
        for row in data["rows"]:
            met = {True: "yes", False: "**no**", None: ""}[row["passed"]]
            cells = [f"`{name}`", row["measure"], row["value"], row["target"], met]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    where = "; ".join(sorted(machines)) or "nowhere yet"
    return "\n".join([f"Measured by `scripts/bench/all` on {where}.", "", *lines])


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md lacks the {START} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table()}\n{END}{tail}")
    print("README.md: Performance table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
