"""A group's placement group goes back to the cluster when its trial ends (`group_release`),
and Ray Train's own cleaner, which cannot work without the dashboard, is left out of the
group's trainer (`ray_compat.group_trainer`)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ugro_hpo.execution.group_release import GroupRelease
from ugro_hpo.execution.ray_compat import CLEANER, group_trainer
from ugro_hpo.optimize import protocol as p


def _loop(config: dict) -> None:
    return None


def _callback_names(trainer) -> list[str]:
    return [type(c).__name__ for c in trainer._create_default_callbacks()]


def test_the_group_trainer_leaves_out_only_ray_train_s_cleaner() -> None:
    from ray import train
    from ray.train.torch import TorchTrainer

    scaling = train.ScalingConfig(num_workers=2)
    ray_s = _callback_names(TorchTrainer(_loop, scaling_config=scaling))
    ours = _callback_names(group_trainer()(_loop, scaling_config=scaling))
    assert CLEANER in ray_s  # if Ray renames or drops it, this says the override is stale
    assert ours == [name for name in ray_s if name != CLEANER]


def _state(group) -> str:
    from ray.util.placement_group import placement_group_table

    return placement_group_table(group)["state"]


@pytest.fixture
def reserved(ray_address: str):
    """Two real placement groups in the session's Ray, as a group's workers hold them."""
    from ray.util.placement_group import placement_group, remove_placement_group

    groups = [placement_group([{"CPU": 0.01}, {"CPU": 0.01}]) for _ in range(2)]
    for group in groups:
        assert group.wait(timeout_seconds=120)
    yield groups
    for group in groups:
        if _state(group) != "REMOVED":
            remove_placement_group(group)


def _result(group) -> dict:
    return {p.STEP: 2, "eval_loss": 1.0, p.GROUP_PLACEMENT: group.id.hex()}


@pytest.mark.parametrize("ending", ["on_trial_complete", "on_trial_error"])
def test_a_group_s_placement_group_is_removed_when_its_trial_ends(reserved, ending: str) -> None:
    release = GroupRelease()
    stopped, running = SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")
    release.on_trial_result(iteration=1, trials=[], trial=stopped, result=_result(reserved[0]))
    release.on_trial_result(iteration=1, trials=[], trial=running, result=_result(reserved[1]))
    getattr(release, ending)(iteration=2, trials=[], trial=stopped)
    assert [_state(g) for g in reserved] == ["REMOVED", "CREATED"]  # only the ended trial's
    getattr(release, ending)(iteration=3, trials=[], trial=stopped)  # ended twice: no error
    release.on_experiment_end(trials=[])  # whatever is still held goes when the study ends
    assert [_state(g) for g in reserved] == ["REMOVED", "REMOVED"]


def test_a_group_its_controller_removed_already_is_no_error(reserved) -> None:
    from ray.util.placement_group import remove_placement_group

    release = GroupRelease()
    trial = SimpleNamespace(trial_id="a")
    release.on_trial_result(iteration=1, trials=[], trial=trial, result=_result(reserved[0]))
    remove_placement_group(reserved[0])
    release.on_trial_complete(iteration=2, trials=[], trial=trial)
    assert _state(reserved[0]) == "REMOVED" and release.held == {}


def test_a_result_without_a_group_or_with_a_malformed_one_holds_nothing(reserved) -> None:
    release = GroupRelease()
    trial = SimpleNamespace(trial_id="a")
    release.on_trial_result(iteration=1, trials=[], trial=trial, result={p.STEP: 1})
    assert release.held == {}
    release.on_trial_result(iteration=1, trials=[], trial=trial,
                            result={p.GROUP_PLACEMENT: "not an id"})  # fmt: skip
    release.on_trial_complete(iteration=2, trials=[], trial=trial)  # logged, not raised
    assert [_state(g) for g in reserved] == ["CREATED", "CREATED"]
