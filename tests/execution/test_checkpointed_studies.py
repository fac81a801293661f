"""Trials that report checkpoints through Ray Tune's checkpoint API run under every scheduler
and tracker as other trials do, and the study records each trial's last checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from ugro_hpo.optimize import protocol as p

CUSTOM = ["objective=custom", "objective.fn=fixture_objectives:checkpointed_quadratic",
          "search_space=quadratic", "max_steps=4", "eval_every=1", "n_trials=4",
          "parallel_jobs=2"]  # fmt: skip


@pytest.mark.parametrize(("scheduler", "tracking"), [
    ("asha", "mlflow"),  # the defaults, in the default suite; the other schedulers marked slow
    pytest.param("hyperband", "none", marks=pytest.mark.slow),
    pytest.param("median", "none", marks=pytest.mark.slow),
])  # fmt: skip
def test_checkpoints_pass_the_schedulers_and_trackers_and_are_recorded(
    study: Any, tmp_path: Path, scheduler: str, tracking: str
) -> None:
    shared = tmp_path / "shared"  # ray.storage_path: where every node would see them
    result = study(*CUSTOM, f"scheduler={scheduler}", f"tracking={tracking}",
                   f"study_name=ckpt-{scheduler}", f"ray.storage_path={shared}")  # fmt: skip
    assert [r.state for r in result.records if r.state not in ("complete", "pruned")] == []
    stored = optuna.load_study(study_name=f"ckpt-{scheduler}",
                               storage=f"sqlite:///{tmp_path / 'outputs' / 'studies.db'}")  # fmt: skip
    ray_dir = shared / f"ckpt-{scheduler}"
    assert not (tmp_path / "outputs" / "ray").exists()
    for trial in [t for t in stored.trials if p.outcome_of(t) in p.RAN]:
        record = trial.user_attrs[p.TRIAL_CHECKPOINT]
        assert record["step"] == trial.user_attrs[p.TRIAL_LAST_STEP]
        state = json.loads((ray_dir / record["path"] / "state.json").read_text())
        assert state["step"] == record["step"]  # Ray Tune stored the folder the trial reported
    complete = [r for r in result.records if r.state == "complete"]
    assert complete and all(r.metrics["started_at"] == 0.0 for r in complete)  # fresh starts
    if tracking == "mlflow":
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
        (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
        runs = [r for r in client.search_runs([experiment.experiment_id])
                if "value" in r.data.metrics]  # fmt: skip
        assert len(runs) == 4


def test_a_reported_checkpoint_goes_with_its_metrics_and_must_be_a_folder(tmp_path: Path) -> None:
    from ugro_hpo.execution.trial_runner import Reporter, TrialFailed

    plain: list[Any] = []
    with_checkpoint: list[Any] = []
    reporter = Reporter(("value",), plain.append,
                        checkpoint_sink=lambda r, f: with_checkpoint.append((r, f)))  # fmt: skip
    reporter(1, value=1.0)
    reporter(2, checkpoint=tmp_path, value=0.5)
    assert plain == [{"value": 1.0, "step": 1}]
    assert with_checkpoint == [({"value": 0.5, "step": 2}, str(tmp_path))]
    with pytest.raises(TrialFailed, match="not a folder"):
        reporter(3, checkpoint=tmp_path / "missing", value=0.1)
    with pytest.raises(TrialFailed, match="missing"):  # a checkpoint still needs the metrics
        reporter(4, checkpoint=tmp_path)
    assert reporter.checkpoint is None and reporter.resumed_from_step == 0  # a fresh start


@pytest.mark.slow
def test_a_custom_objectives_retry_reads_the_checkpoint_it_continues_from(
    study: Any, tmp_path: Path
) -> None:
    args = [*CUSTOM, "scheduler=fifo", "tracking=none", "study_name=ckpt-custom", "n_trials=1"]
    study(*args)
    stored = optuna.load_study(study_name="ckpt-custom",
                               storage=f"sqlite:///{tmp_path / 'outputs' / 'studies.db'}")  # fmt: skip
    first = stored.trials[0]
    assert first.user_attrs[p.TRIAL_CHECKPOINT]["step"] == 4
    # What a rerun does for an interrupted trial (`optimize.storage.requeue_once`).
    stored.enqueue_trial(first.params, user_attrs={p.TRIAL_RETRY_OF: first.number})
    result = study(*args[:-1], "n_trials=2")
    retry = next(r for r in result.records if r.number == 1)
    assert retry.resumed_from_step == 4
    assert retry.metrics["started_at"] == 4.0  # the function read report.checkpoint's step


@pytest.mark.parametrize(
    ("metadata", "step"),
    [({"ugro_hpo_step": 2}, 2), ({"ugro_hpo_step": 4}, 4), ({}, None), (None, None),
     ({"ugro_hpo_step": 0}, None), ({"ugro_hpo_step": 5}, None), ({"ugro_hpo_step": True}, None),
     ({"ugro_hpo_step": "3"}, None), ({"ugro_hpo_step": 2.0}, None), (["ugro_hpo_step"], None)],
)  # fmt: skip
def test_ray_s_retry_uses_a_checkpoint_s_step_only_when_it_is_a_step_of_the_trial(
    metadata: Any, step: int | None
) -> None:
    from ugro_hpo.execution.checkpoints import step_of

    assert step_of(metadata, max_steps=4) == step
