"""A trial's checkpoints through Ray Tune's checkpoint API, in the trial's own process.

``report(step, checkpoint=folder, **metrics)`` hands the folder to ``tune.report`` as a
``tune.Checkpoint``: Ray copies it into the study's storage path (a shared folder or a bucket)
before the result reaches the driver, which records where it is (`optimize.checkpoints`). A
retry of an interrupted trial reads it back here: as it is on a local or shared folder,
downloaded first from a bucket. There are two kinds of retry: a rerun of the study gives the
retry the location the study recorded; Ray's own retry of a trial whose worker died
(``max_failures``) hands it the trial's last checkpoint, whose step rides in its metadata.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

log = logging.getLogger(__name__)
STEP_KEY = "ugro_hpo_step"  # the step a checkpoint was reported at, in its metadata


def report_checkpoint(result: dict[str, Any], folder: str) -> None:
    """Ray Tune's report of a result with a checkpoint (Ray 2.60's public form)."""
    from ray import tune

    checkpoint = tune.Checkpoint.from_directory(folder)
    checkpoint.set_metadata({STEP_KEY: int(result["step"])})  # for Ray's retry (`from_ray`)
    tune.report(result, checkpoint=checkpoint)


def restore_checkpoint(resume: Any) -> tuple[str | None, int]:
    """The local folder and step of the checkpoint the driver gave this trial to continue
    from, or ``(None, 0)`` (none given). The driver checked the location against the study's
    storage path before handing it over."""
    if not isinstance(resume, dict) or not isinstance(resume.get("path"), str):
        return None, 0
    path, step = resume["path"], int(resume.get("step", 0))
    if "://" not in path:
        return path, step
    from ray import tune

    return _local_copy(tune.Checkpoint(path)), step


def restore_ray_retry(max_steps: int) -> tuple[str | None, int]:
    """The local folder and step of the checkpoint Ray hands a trial it runs again after its
    worker died (``max_failures``), or ``(None, 0)``: a first run, or no checkpoint (yet). A
    checkpoint whose step is not a whole number from 1 to ``max_steps`` is not used."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None, 0
    try:
        metadata = checkpoint.get_metadata()
    except Exception:  # unreadable metadata: as good as none
        metadata = None
    step = step_of(metadata, max_steps)
    if step is None:
        log.warning("the checkpoint Ray gave this retry has no step from 1 to max_steps=%d; "
                    "it starts from step 0", max_steps)  # fmt: skip
        return None, 0
    if checkpoint.filesystem.type_name == "local":
        return checkpoint.path, step
    return _local_copy(checkpoint), step


def step_of(metadata: Any, max_steps: int) -> int | None:
    """The step a checkpoint's metadata gives, if it is a whole number from 1 to ``max_steps``
    (the metadata is a file in the storage path, which others may write to)."""
    step = metadata.get(STEP_KEY) if isinstance(metadata, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= max_steps:
        return None
    return step


def _local_copy(checkpoint: Any) -> str:
    """A checkpoint in a bucket, downloaded into a folder of its own."""
    return str(checkpoint.to_directory(tempfile.mkdtemp(prefix="ugro-resume-")))
