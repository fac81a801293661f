"""Give a group's CPUs and GPUs back to the cluster the moment its trial ends.

A trial of ``resources.workers`` above 1 runs its workers in a placement group that Ray Train's
controller makes and removes. When a scheduler stops the trial, Tune ends the trial's actor, and
with it the controller, before the controller can remove anything; the placement group lives on
until the study's driver exits (Ray scopes it to the job), so each stopped group would hold its
resources for the rest of the study and the next trials wait for ever. Rank 0 names its
placement group in every report (`protocol.GROUP_PLACEMENT`); this callback, in the driver,
removes it when Tune says the trial ended, whatever the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune import Callback

from ugro_hpo.optimize import protocol as p

log = logging.getLogger(__name__)


class GroupRelease(Callback):
    """Removes each group trial's placement group once the trial has ended."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}  # trial id -> its group's placement group id (hex)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:  # fmt: skip
        group = result.get(p.GROUP_PLACEMENT)
        if isinstance(group, str):
            self.held.setdefault(trial.trial_id, group)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.release(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.release(trial.trial_id)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial_id in list(self.held):
            self.release(trial_id)

    def release(self, trial_id: str) -> None:
        """Remove the trial's placement group; one its controller removed already is no error."""
        group = self.held.pop(trial_id, None)
        if group is None:
            return
        from ray import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        try:
            remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(group)))
        except Exception as exc:  # a removed or unknown group; the study goes on
            log.debug("placement group %s of trial %s: %s", group, trial_id, exc)
