"""A Hydra app whose trials take uneven time: ``width`` sets the seconds per step.

Each job runs ``steps`` steps of ``step_s * width / 4`` seconds (a trial lasts 0.5 s at width 1
to 4 s at width 8 with the defaults) and reports its loss after each with ``ugro_hpo.report``.
The loss is ``(log10(lr) + 1.5)^2 + 0.05 (width - 5)^2 + 1/step``: lowest at lr = 10^-1.5,
width 5, and falling with every step, so the first steps already rank trials as the last does
(a scheduler can tell a poor trial early). The job returns the last step's loss.

It runs under either sweeper, chosen on the command line (its config selects none):

    python uneven_app.py -m hydra/sweeper=ugro_hpo hydra.sweeper.metric=loss \
        hydra.sweeper.max_steps=8 hydra.sweeper.scheduler=asha
    python uneven_app.py -m hydra/sweeper=optuna hydra/launcher=joblib hydra.launcher.n_jobs=2

Hydra's Optuna sweeper runs in a venv without ugro_hpo, where ``report`` does nothing.
"""

import math
import time

import hydra
from omegaconf import DictConfig

try:
    from ugro_hpo import report
except ImportError:  # the Optuna sweeper's venv

    def report(step: int, **metrics: float) -> None:
        pass


@hydra.main(version_base="1.3", config_path=".", config_name="uneven_app")
def main(cfg: DictConfig) -> float:
    lr, width = float(cfg.lr), int(cfg.width)
    quality = (math.log10(lr) + 1.5) ** 2 + 0.05 * (width - 5) ** 2
    loss = math.inf
    for step in range(1, cfg.steps + 1):
        time.sleep(cfg.step_s * width / 4)
        loss = quality + 1.0 / step
        report(step, loss=loss)
    return loss


if __name__ == "__main__":
    main()
