"""Trial checkpoints as the study records them, read back and pruned.

A trial that reports a checkpoint (through Ray Tune's checkpoint API, into Ray's storage path)
has its location stored on its Optuna trial (`protocol.TRIAL_CHECKPOINT`): a path relative to
that storage path and the step. When the trial is interrupted and its parameters run again,
the retry continues from there. The study database may be shared with other drivers, so what
is read back is hostile: a location is used only when it is a plain relative path of simple
names that stays inside the storage path (no ``..``, no absolute path, no symbolic link on
the way), and anything else is refused with a warning (the retry then starts from step 0).
Once trials finish, only the ``keep`` best keep their checkpoint.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugro_hpo.optimize import protocol as p

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,199}")
MAX_PARTS = 8


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint's place under Ray's storage path, and the step it was reported at."""

    path: str
    step: int

    def record(self) -> dict[str, Any]:
        """What the study keeps (`protocol.TRIAL_CHECKPOINT`)."""
        return {"path": self.path, "step": self.step}

    def location(self, root: str) -> str:
        """The checkpoint's full path (a local folder, or a URI under a bucket's root)."""
        if is_uri(root):
            return f"{root.rstrip('/')}/{self.path}"
        return str(Path(root) / self.path)


def is_uri(root: str) -> bool:
    """A bucket (``s3://``, ``gs://``, ...) rather than a local or shared folder."""
    return "://" in root


def relative_path(*parts: str) -> str | None:
    """``parts`` joined as a stored path, or None if any of them is not a simple name."""
    if not parts or len(parts) > MAX_PARTS:
        return None
    if not all(isinstance(p, str) and _NAME.fullmatch(p) and p not in {".", ".."} for p in parts):
        return None
    return "/".join(parts)


def read_checkpoint(value: Any, root: str, max_steps: int, what: str) -> StoredCheckpoint | None:
    """The stored checkpoint ``value`` if it is safe to use under ``root``; else None, with a
    warning that says why (``what`` names the trial)."""
    if value is None:
        return None
    reason = _refusal(value, root, max_steps)
    if reason:
        log.warning("%s: its stored checkpoint is not used (%s); it starts from step 0", what,
                    reason)  # fmt: skip
        return None
    return StoredCheckpoint(str(value["path"]), int(value["step"]))


def _refusal(value: Any, root: str, max_steps: int) -> str | None:
    if not isinstance(value, dict) or set(value) != {"path", "step"}:
        return "not a checkpoint record"
    step, path = value["step"], value["path"]
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= max_steps:
        return f"its step is not a whole number from 1 to max_steps={max_steps}"
    if not isinstance(path, str) or relative_path(*path.split("/")) != path:
        return "its path is not a relative path of simple names inside Ray's storage path"
    if is_uri(root):
        return None
    base = Path(root)
    current = base
    for part in path.split("/"):
        current = current / part
        if current.is_symlink():
            return "its path goes through a symbolic link"
    try:
        resolved = current.resolve(strict=True)
    except OSError:
        return "it is not there (any more)"
    if not resolved.is_relative_to(base.resolve()) or not resolved.is_dir():
        return "it is not a folder inside Ray's storage path"
    return None


def prune(root: str, finished: list[tuple[StoredCheckpoint, float]], keep: int | None) -> int:
    """Delete the checkpoints of the finished trials beyond the ``keep`` best (lowest score
    first; None keeps all); returns how many were deleted. Only local storage is pruned here
    (a bucket has its own lifecycle rules). Every path was checked by `read_checkpoint`."""
    if keep is None or is_uri(root):
        return 0
    ranked = sorted(finished, key=lambda entry: entry[1])
    deleted = 0
    for checkpoint, _ in ranked[max(keep, 0) :]:
        deleted += remove(root, checkpoint)
    return deleted


def remove(root: str, checkpoint: StoredCheckpoint) -> int:
    """Delete one checkpoint folder (checked again just before); 1 if it was deleted."""
    if is_uri(root) or _refusal(checkpoint.record(), root, checkpoint.step) is not None:
        return 0
    shutil.rmtree(Path(root) / checkpoint.path, ignore_errors=True)
    return 1


@dataclass(frozen=True)
class CheckpointPlace:
    """Where this driver's trials put their checkpoints: Ray Tune's storage path for the study
    (``root``), this run's experiment folder in it, and how many finished trials keep theirs."""

    root: str
    experiment: str
    keep: int | None = None

    def reported(self, trial_id: str, dir_name: Any, step: int) -> StoredCheckpoint | None:
        """The checkpoint Ray Tune stored with a trial's result (its ``checkpoint_dir_name``)."""
        if not isinstance(dir_name, str):
            return None
        path = relative_path(self.experiment, trial_dir_name(trial_id), dir_name)
        return StoredCheckpoint(path, step) if path is not None else None

    def resume(self, opened: Any, trial: Any, max_steps: int) -> dict[str, Any]:
        """For a retry of an interrupted trial (`protocol.TRIAL_RETRY_OF`) with the same
        parameters: the extras that make it continue from that trial's last checkpoint, which
        is recorded on the retry (``resumed_from_step``). Empty when there is none to use."""
        from ugro_hpo.optimize import optuna_compat as compat

        earlier = trial.user_attrs.get(p.TRIAL_RETRY_OF)
        if isinstance(earlier, bool) or not isinstance(earlier, int):
            return {}
        try:
            stored_trial = compat.trial_by_id(opened.storage, opened.trial_id(earlier))
        except Exception:  # no such trial (a hostile number): nothing to continue from
            return {}
        record = stored_trial.user_attrs.get(p.TRIAL_CHECKPOINT)
        if record is None:
            return {}
        what = f"trial {trial.number} (a retry of trial {earlier})"
        if dict(stored_trial.params) != dict(trial.params):
            log.warning("%s: its parameters differ from the trial it retries; it starts from "
                        "step 0", what)  # fmt: skip
            return {}
        stored = read_checkpoint(record, self.root, max_steps, what)
        if stored is None:
            return {}
        trial.set_user_attr(p.TRIAL_RESUMED_FROM, stored.record())
        trial.set_user_attr(p.TRIAL_RESUMED_FROM_STEP, stored.step)
        log.info("%s continues from its checkpoint at step %d", what, stored.step)
        return {"resume": {"path": stored.location(self.root), "step": stored.step}}

    def prune(self, opened: Any, space: Any, max_steps: int) -> int:
        """Keep the checkpoints of the ``keep`` best finished trials (by the first objective;
        pruned trials rank after complete ones) and drop the rest, and the checkpoints that
        finished retries continued from."""
        if self.keep is None or is_uri(self.root):
            return 0
        from optuna.trial import TrialState

        sign = 1.0 if space.objectives[0].direction == "minimize" else -1.0
        finished: list[tuple[StoredCheckpoint, float]] = []
        deleted = 0
        for trial in opened.trials((TrialState.COMPLETE, TrialState.PRUNED)):
            attrs = trial.user_attrs
            earlier = _quiet_read(attrs.get(p.TRIAL_RESUMED_FROM), self.root, max_steps)
            if earlier is not None:
                deleted += remove(self.root, earlier)
            stored = _quiet_read(attrs.get(p.TRIAL_CHECKPOINT), self.root, max_steps)
            if stored is None or p.outcome_of(trial) not in p.RAN:
                continue
            complete = p.outcome_of(trial) == p.Outcome.COMPLETE and trial.values
            finished.append((stored, sign * trial.values[0] if complete else float("inf")))
        return deleted + prune(self.root, finished, self.keep)


def trial_dir_name(trial_id: str) -> str:
    """The folder of a trial in Ray's experiment folder (short: Ray's default spells out the
    whole config)."""
    return f"trial_{trial_id}"


def _quiet_read(value: Any, root: str, max_steps: int) -> StoredCheckpoint | None:
    if value is None or _refusal(value, root, max_steps) is not None:
        return None
    return StoredCheckpoint(str(value["path"]), int(value["step"]))
