"""YAHPO Gym's own answers for LCBench points, to check `lcbench.LCBench` against: reads a JSON
list of ``{"task", "epoch", ...parameters}`` and prints one list of outputs (in YAHPO Gym's
target order) per point. Runs in the YAHPO/DEHB venv, with YAHPO Gym's data path set to DATA
(YAHPO Gym keeps it in a settings file under $HOME, which the caller points elsewhere).

    python yahpo_reference.py DATA POINTS_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from yahpo_gym import BenchmarkSet, local_config


def main() -> None:
    data, points = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    local_config.init_config()
    local_config.set_data_path(data)
    bench = BenchmarkSet("lcbench", multithread=False)
    configs = [{**{k: v for k, v in p.items() if k != "task"}, "OpenML_task_id": p["task"]}
               for p in points]  # fmt: skip
    answers = bench.objective_function(configs)
    print(
        json.dumps(
            {
                "targets": bench.targets,
                "outputs": [[float(a[t]) for t in bench.targets] for a in answers],
            }
        )
    )


if __name__ == "__main__":
    main()
