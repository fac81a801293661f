"""Rows of instruction or chat data: from the hub, a ``save_to_disk`` folder, or a local file.

``path`` is a local ``.jsonl`` / ``.json`` file (read with the ``json`` loader of
``datasets.load_dataset``), a folder written by ``save_to_disk`` (``load_from_disk``), or a hub
id or a local copy of a hub dataset's files (``load_dataset``). A source with an eval split of its own uses it; otherwise a seeded
share of the training rows is held out, the same for every trial of a study.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError

FILE_SUFFIXES = (".jsonl", ".json")
SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes


def load(path: str, name: str | None) -> Any:
    """A DatasetDict or Dataset, or a one-line ConfigError naming what could not be read."""
    import datasets

    datasets.disable_progress_bars()  # a bar per split would drown the study's progress lines
    datasets.logging.set_verbosity_error()
    local = Path(path).expanduser()
    try:
        if local.suffix in FILE_SUFFIXES:
            if not local.is_file():
                raise ConfigError(f"dataset.path: file not found: {path}")
            return datasets.load_dataset("json", data_files=str(local))
        if any((local / saved).is_file() for saved in SAVED_MARKERS):
            return datasets.load_from_disk(str(local))
        return datasets.load_dataset(path, name)
    except ConfigError:
        raise
    except Exception as exc:  # datasets raises many kinds (OSError, ValueError, its own, arrow's)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"dataset.path: cannot load {path!r} ({first[:300]})") from None


def split_rows(
    loaded: Any,
    train_split: str,
    eval_split: str | None,
    eval_fraction: float,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and eval rows as plain dicts."""
    if hasattr(loaded, "keys"):  # a DatasetDict
        splits = list(loaded.keys())
        if train_split not in splits:
            raise ConfigError(f"dataset.train_split: {train_split!r} not in {splits}")
        train = loaded[train_split].to_list()
        if eval_split and eval_split in splits:
            return train, loaded[eval_split].to_list()
    else:
        train = loaded.to_list()
    return hold_out(train, eval_fraction, seed)


def hold_out(rows: list[Any], eval_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded share of ``rows`` held out for evaluation; both parts keep the rows' order."""
    if len(rows) < 2:
        raise ConfigError(f"dataset: needs at least two rows to split train/eval, got {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[: max(1, math.ceil(eval_fraction * len(rows)))])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]
