"""Which Ray Tune scheduler a study can run with.

Every Ray scheduler but FIFO ranks trials by one metric, so a study with several objectives
can only run without early stopping: ``scheduler=auto`` (the default) is ASHA for one objective
and FIFO for several, and any other scheduler given with several objectives is refused before
anything starts, in the app and in the Hydra sweeper alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ugro_hpo.errors import ConfigError

AUTO = "ugro_hpo.execution.schedulers.auto_scheduler"
ASHA = "ray.tune.schedulers.ASHAScheduler"
FIFO = "ray.tune.schedulers.FIFOScheduler"
SERVES_SEVERAL_OBJECTIVES = frozenset({FIFO, "ray.tune.schedulers.trial_scheduler.FIFOScheduler"})


def choose_scheduler(
    spec: Mapping[str, Any], objectives: int, choice: str = "?"
) -> tuple[dict[str, Any], str]:
    """The scheduler's spec the study runs with, and why (empty: as configured).

    ``scheduler=auto`` becomes ASHA with its settings (one objective) or FIFO (several); a
    scheduler that ranks trials by one metric, with several objectives, is an error naming
    ``choice``, the option as the user chose it.
    """
    target = str(spec["_target_"])
    if target == AUTO:
        if objectives == 1:
            return {**spec, "_target_": ASHA}, "auto: ASHA for one objective"
        return {"_target_": FIFO}, (
            f"auto: no early stopping, since schedulers rank trials by one metric and the "
            f"study has {objectives} objectives"
        )
    if objectives > 1 and target not in SERVES_SEVERAL_OBJECTIVES:
        named = f"{choice} ({target})" if choice not in ("?", "(composed)") else target
        raise ConfigError(
            f"{named} stops trials by one metric, but the search space has "
            f"{objectives} objectives; choose fifo, which runs every trial to max_steps",
            key="scheduler",
        )
    return dict(spec), ""
