"""`train-best` runs the study's objective as a trial does (`execution.trial_runner`): what a
trial of the study could not report, the final training cannot either, and a metric it may
report reaches final_metrics.json as a trial's reaches the study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from attack_support import StoredCopy, one_line_error

pytestmark = pytest.mark.integration

CUSTOM = {"_target_": "ugro_hpo.objectives.custom.CustomObjective", "fn": "fixture_objectives:quadratic_xy"}  # fmt: skip
TRAIN = ["hpo", "train-best", "--study-name", "victim"]


def _custom(stored: StoredCopy) -> None:
    config = stored.config()
    config["objective"] = CUSTOM
    stored.set_attr("ugro:config", config)


def test_a_report_a_trial_could_not_make_ends_the_final_training_in_one_line(
    stored: StoredCopy, ugro: Any, tmp_path: Path
) -> None:
    _custom(stored)
    out = tmp_path / "final"
    outcome = ugro(*TRAIN, "--objective-fn", "fixture_objectives:nan_at_first_step",
                   "--output-dir", str(out))  # fmt: skip
    assert outcome.code == 2
    assert one_line_error(outcome) == (
        "ugro_hpo: error: final training: metric 'value' is nan at step 1"
    )
    assert not (out / "final_metrics.json").exists()


def test_the_final_training_writes_the_checked_metrics_of_the_objective(
    stored: StoredCopy, ugro: Any, tmp_path: Path
) -> None:
    _custom(stored)
    out = tmp_path / "final"
    outcome = ugro(*TRAIN, "--objective-fn", "fixture_objectives:quadratic_xy",
                   "--output-dir", str(out))  # fmt: skip
    assert outcome.code in (0, None), outcome.err[-2000:]
    final = json.loads((out / "final_metrics.json").read_text())
    assert set(final["metrics"]) == {"value"} and isinstance(final["metrics"]["value"], float)
