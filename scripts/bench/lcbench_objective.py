"""The benchmark's objective for ugro_hpo: an LCBench configuration trained epoch by epoch (see
`lcbench_training`), run by Ray Tune's workers like any other objective."""

from __future__ import annotations

from typing import Any

from lcbench import PARAMETERS
from lcbench_training import METRIC, RunFiles, train

from ugro_hpo.objectives.base import Objective, ReportFn, TrialContext


class LCBenchObjective(Objective):
    """The ugro_hpo objective of one run: trains a trial's configuration on the run's task."""

    parameters = frozenset(PARAMETERS)
    metrics = frozenset({METRIC})

    def __init__(self, run: RunFiles) -> None:
        self.run = run
        self.name = f"lcbench({run.task})"

    def __call__(
        self, params: dict[str, Any], report: ReportFn, context: TrialContext
    ) -> dict[str, float]:
        error = train(self.run, params, str(context.number),
                      lambda epoch, value: report(epoch, **{METRIC: value}),
                      epochs=context.max_steps)  # fmt: skip
        return {METRIC: error}
