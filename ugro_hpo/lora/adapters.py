"""Adapter checkpoints, only when asked (`objective.save_adapter=true`), and never too many.

Each trial's adapter goes to ``<run_dir>/adapters/trial_<n>``; only the ``keep`` best (lowest
eval_loss) are kept, so a long study cannot fill the disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ugro_hpo.objectives.base import TrialContext


def save_adapter(model: Any, context: TrialContext, eval_loss: float, keep: int) -> Path | None:
    """Save this trial's adapter if it is among the ``keep`` best so far; drop the rest."""
    from filelock import FileLock

    root = Path(context.run_dir) / "adapters"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        index_path = root / "index.json"
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
        index[str(context.number)] = eval_loss
        ranked = sorted(index, key=lambda k: index[k])
        kept, dropped = ranked[: max(keep, 0)], ranked[max(keep, 0) :]
        for trial in dropped:
            shutil.rmtree(root / f"trial_{trial}", ignore_errors=True)
        target = root / f"trial_{context.number}"
        if str(context.number) in kept:
            model.save_pretrained(target)
        index_path.write_text(json.dumps({k: index[k] for k in kept}, indent=2))
    return target if str(context.number) in kept else None
