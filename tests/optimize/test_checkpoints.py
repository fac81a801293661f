"""Trial checkpoints recorded in the study: a stored location is hostile (a shared study
database), so only a plain path inside Ray's storage path is used; finished trials keep their
checkpoints only among the best ``keep``."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ugro_hpo.optimize import optuna_compat as compat
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.checkpoints import CheckpointPlace, StoredCheckpoint, read_checkpoint
from ugro_hpo.optimize.storage import OpenedStudy
from ugro_hpo.space import parse_search_space

SPACE = parse_search_space(
    {"parameters": {"x": {"type": "float", "min": 0.0, "max": 1.0}},
     "objectives": [{"name": "loss", "direction": "minimize"}]}, "test"
)  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "ray" / "study"
    (folder / "run1" / "trial_a" / "checkpoint_000001").mkdir(parents=True)
    return folder


def _opened(tmp_path: Path) -> OpenedStudy:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'studies.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    return OpenedStudy(study, storage, compat.study_id(storage, "s"), False, 0)


def test_a_plain_path_inside_the_storage_path_is_used(root: Path) -> None:
    record = {"path": "run1/trial_a/checkpoint_000001", "step": 10}
    stored = read_checkpoint(record, str(root), 20, "trial 0")
    assert stored == StoredCheckpoint("run1/trial_a/checkpoint_000001", 10)
    assert stored.location(str(root)) == str(root / "run1" / "trial_a" / "checkpoint_000001")


@pytest.mark.parametrize(
    "record",
    [
        {"path": "../outside", "step": 10},  # traversal
        {"path": "run1/../../outside", "step": 10},
        {"path": "/etc", "step": 10},  # absolute
        {"path": "run1/trial_a/checkpoint_000001/", "step": 10},  # an empty name
        {"path": "run1\\..\\..\\outside", "step": 10},
        {"path": "run1/trial_a/checkpoint_000001", "step": True},  # not a step
        {"path": "run1/trial_a/checkpoint_000001", "step": 0},
        {"path": "run1/trial_a/checkpoint_000001", "step": 21},  # beyond max_steps
        {"path": "run1/trial_a/checkpoint_000001", "step": 10, "code": "x"},  # more than a record
        {"path": "run1/trial_a/missing", "step": 10},  # not there
        ["run1/trial_a/checkpoint_000001", 10],
        "run1/trial_a/checkpoint_000001",
    ],
)
def test_a_hostile_stored_location_is_refused_with_a_warning(root: Path, record, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert read_checkpoint(record, str(root), 20, "trial 0") is None
    assert "trial 0: its stored checkpoint is not used" in caplog.text


def test_a_symbolic_link_out_of_the_storage_path_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "run1" / "escape").symlink_to(outside)
    (root / "run1" / "inside").symlink_to(root / "run1" / "trial_a")  # a link at all: refused
    for path in ("run1/escape", "run1/inside/checkpoint_000001"):
        assert read_checkpoint({"path": path, "step": 5}, str(root), 20, "trial 0") is None


def test_a_bucket_location_is_checked_by_its_text() -> None:
    bucket = "s3://bucket/ray/study"
    good = read_checkpoint({"path": "run1/trial_a/checkpoint_000001", "step": 5}, bucket, 20, "t")
    assert good is not None
    assert good.location(bucket) == "s3://bucket/ray/study/run1/trial_a/checkpoint_000001"
    assert read_checkpoint({"path": "../other/c", "step": 5}, bucket, 20, "t") is None


def _interrupted_with(opened: OpenedStudy, record) -> optuna.Trial:
    """Trial 0 failed with ``record`` as its checkpoint; its retry asked (as a rerun does)."""
    first = opened.study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    first.set_user_attr(p.TRIAL_CHECKPOINT, record)
    opened.study.tell(first, state=TrialState.FAIL)
    opened.study.enqueue_trial(first.params, user_attrs={p.TRIAL_RETRY_OF: first.number})
    retry = opened.study.ask()
    retry.suggest_float("x", 0.0, 1.0)
    return retry


def test_the_retry_of_an_interrupted_trial_continues_from_its_checkpoint(
    tmp_path: Path, root: Path
) -> None:
    opened = _opened(tmp_path)
    retry = _interrupted_with(opened, {"path": "run1/trial_a/checkpoint_000001", "step": 10})
    extras = CheckpointPlace(str(root), "run2").resume(opened, retry, 20)
    assert extras == {"resume": {"path": str(root / "run1/trial_a/checkpoint_000001"), "step": 10}}
    stored = opened.study.trials[retry.number].user_attrs
    assert stored[p.TRIAL_RESUMED_FROM_STEP] == 10


def test_a_retry_pointed_at_a_place_outside_starts_from_step_zero(
    tmp_path: Path, root: Path, caplog
) -> None:
    (tmp_path / "elsewhere").mkdir()
    opened = _opened(tmp_path)
    retry = _interrupted_with(opened, {"path": "../../elsewhere", "step": 10})
    with caplog.at_level(logging.WARNING):
        assert CheckpointPlace(str(root), "run2").resume(opened, retry, 20) == {}
    assert "not used" in caplog.text
    assert p.TRIAL_RESUMED_FROM_STEP not in opened.study.trials[retry.number].user_attrs


def test_finished_trials_keep_their_checkpoints_only_among_the_best(
    tmp_path: Path, root: Path
) -> None:
    opened = _opened(tmp_path)
    place = CheckpointPlace(str(root), "run1", keep=2)
    folders = {}
    for number, loss in enumerate([0.5, 0.1, 0.9, 0.3]):
        trial = opened.study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
        stored = place.reported(f"t{number}", "checkpoint_000003", 15)
        assert stored is not None
        folders[loss] = root / stored.path
        folders[loss].mkdir(parents=True)
        trial.set_user_attr(p.TRIAL_CHECKPOINT, stored.record())
        opened.study.tell(trial, loss)
    outside = tmp_path / "not-ours"
    outside.mkdir()
    hostile = opened.study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    hostile.set_user_attr(p.TRIAL_CHECKPOINT, {"path": "../../not-ours", "step": 15})
    opened.study.tell(hostile, 0.95)
    assert place.prune(opened, SPACE, 20) == 2
    assert {loss for loss, folder in folders.items() if folder.is_dir()} == {0.1, 0.3}
    assert outside.is_dir()  # a stored path outside the storage path is never deleted
