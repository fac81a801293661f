"""A trial's checkpoints through Ray Tune's checkpoint API, in the trial's own process.

``report(step, checkpoint=folder, **metrics)`` hands the folder to ``tune.report`` as a
``tune.Checkpoint``: Ray copies it into the study's storage path (a shared folder or a bucket)
before the result reaches the driver, which records where it is (`optimize.checkpoints`). A
retry of an interrupted trial is given that location and reads it back here: as it is on a
local or shared folder, downloaded first from a bucket.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

log = logging.getLogger(__name__)


def report_checkpoint(result: dict[str, Any], folder: str) -> None:
    """Ray Tune's report of a result with a checkpoint (Ray 2.60's public form)."""
    from ray import tune

    tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))


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

    local = tune.Checkpoint(path).to_directory(tempfile.mkdtemp(prefix="ugro-resume-"))
    return local, step
