"""When state may be unpickled from the study storage.

Optuna's CMA-ES sampler keeps its state as pickles in the storage (trial system attributes)
and unpickles them at every ask, and unpickling runs code: whoever can write to the storage
can run code in every driver that samples from it. So a sampler that unpickles runs only on a
storage that this user alone can write to, which ugro_hpo checks, or after the explicit
opt-in ``unpickle_shared_storage=true``:

- a database server (PostgreSQL, MySQL, ...) is never known to be private: opt-in needed;
- a SQLite file is private when it, and each companion file SQLite keeps beside it (``-wal``,
  ``-shm``, ``-journal``), is owned by this user and writable by no one else, and so is the
  directory holding them (or, for a file not created yet, the nearest directory that exists);
  otherwise someone else could change or replace it: opt-in needed;
- an in-memory SQLite database lives in this process alone.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ugro_hpo.errors import ConfigError
from ugro_hpo.security.paths import SQLITE_COMPANIONS, sqlite_file
from ugro_hpo.security.redaction import redact_url

PICKLING_SAMPLERS = frozenset({"optuna.samplers.CmaEsSampler"})
OPT_IN = "unpickle_shared_storage=true"


def refuse_unpickling(sampler_name: str, storage: str, allowed: bool) -> None:
    """Refuse a sampler that unpickles from ``storage`` unless the storage is this user's
    alone or ``allowed`` (the opt-in) is given."""
    if sampler_name not in PICKLING_SAMPLERS or allowed:
        return
    problem = why_not_private(storage)
    if problem:
        raise ConfigError(
            "search: CMA-ES restores its state by unpickling it from the study storage, so "
            f"anyone who can write to {redact_url(storage)} could run code here ({problem}); "
            f"set {OPT_IN} if only you write to it, or choose another search"
        )


def why_not_private(storage: str) -> str | None:
    """Why others may be able to write to ``storage``, or None when only this user can."""
    if storage.startswith("sqlite") and sqlite_file(storage) is None:
        if storage.startswith("sqlite:///") or storage in ("sqlite://", "sqlite:///:memory:"):
            return None  # in memory
        return "a database this check cannot place"
    path = sqlite_file(storage)
    if path is None:
        return "a database server, which other users may write to"
    path = Path(os.path.abspath(path))
    for suffix in SQLITE_COMPANIONS:
        problem = _others_can_write(path.with_name(path.name + suffix))
        if problem:
            return problem
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return _others_can_write(directory)


def _others_can_write(path: Path) -> str | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if info.st_uid != os.geteuid():
        return f"{path} belongs to another user"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users (chmod go-w {path})"
    return None
