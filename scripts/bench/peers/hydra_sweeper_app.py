"""A Hydra app for Hydra's Optuna sweeper: one job evaluates one synthetic function.

Runs in its own venv (see benchlib.hydra_python). Each job appends its job number and value
to ``log`` (JSON lines), which is how the benchmark reads back the sweeper's trial order.

    python hydra_sweeper_app.py -m function=branin dims=2 log=values.jsonl \
        'x1=interval(-5,10)' 'x2=interval(0,15)'
"""

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository: the functions
from ugro_hpo.objectives.synthetic import FUNCTIONS  # a stdlib-only module


@hydra.main(version_base=None, config_path=".", config_name="hydra_sweeper")
def main(cfg: DictConfig) -> float:
    value = FUNCTIONS[cfg.function].fn([float(cfg[f"x{i + 1}"]) for i in range(cfg.dims)])[0]
    if cfg.log:
        with open(cfg.log, "a") as log:
            log.write(json.dumps({"number": HydraConfig.get().job.num, "value": value}) + "\n")
    return value


if __name__ == "__main__":
    main()
