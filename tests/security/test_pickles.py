"""Optuna's CMA-ES sampler restores its state with `pickle` from the study storage, so whoever
can write to a shared database can run code in every driver that samples with it. The first
test shows the attack works (and fails, telling us to revisit the rule, if Optuna stops
pickling); the others check the rule: refused on a shared database unless the user opts in."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sqlite3
from pathlib import Path

import optuna
import pytest

from ugro_hpo.config.plan import build_plan
from ugro_hpo.errors import ConfigError


class _Plant:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_cma_es_state_in_the_storage_is_unpickled_so_it_can_run_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    sampler = optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=url, sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials=12)
    marker = tmp_path / "ran"
    # What another driver of the same database could write:
    planted = pickle.dumps(_Plant(marker)).hex()
    with sqlite3.connect(tmp_path / "shared.db") as db:
        changed = db.execute(
            "UPDATE trial_system_attributes SET value_json = ? WHERE key LIKE 'cma:optimizer:%'",
            (json.dumps(planted),),
        ).rowcount
    assert changed >= 1, "Optuna no longer keeps CMA-ES state in the storage: revisit the rule"
    reloaded = optuna.load_study(
        study_name="s", storage=url, sampler=optuna.samplers.CmaEsSampler(seed=1)
    )
    with contextlib.suppress(Exception):  # whatever the sampler makes of it, the code has run
        reloaded.optimize(
            lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials=1
        )
    assert marker.is_dir()  # the planted code ran


SHARED = "postgresql://ugro:pw@db.invalid:5432/studies"
QUICK = ["objective=synthetic", "search_space=branin", "tracking=none", "search=cmaes"]


@pytest.mark.parametrize("storage", [SHARED, "mysql://u@h/db"])
def test_cma_es_on_a_shared_database_is_refused(compose, tmp_path: Path, storage: str) -> None:
    with pytest.raises(ConfigError, match="unpickle_shared_storage=true") as info:
        build_plan(compose(*QUICK, f"storage={storage}"), tmp_path / "run")
    assert "pw@" not in str(info.value)  # the URL is shown without its password


def test_cma_es_on_a_shared_database_runs_when_the_user_opts_in(compose, tmp_path: Path) -> None:
    plan = build_plan(
        compose(*QUICK, f"storage={SHARED}", "unpickle_shared_storage=true"), tmp_path / "run"
    )
    assert plan.sampler_name == "optuna.samplers.CmaEsSampler"


def test_cma_es_on_a_local_sqlite_file_needs_nothing(compose, tmp_path: Path) -> None:
    plan = build_plan(compose(*QUICK), tmp_path / "run")
    assert plan.sampler_name == "optuna.samplers.CmaEsSampler" and plan.storage.startswith(
        "sqlite:///"
    )


@pytest.mark.parametrize("search", ["tpe", "random", "gp", "qmc", "nsga2", "auto"])
def test_other_samplers_are_not_affected(compose, tmp_path: Path, search: str) -> None:
    build_plan(compose(*QUICK[:3], f"search={search}", f"storage={SHARED}"), tmp_path / "run")


def _database(tmp_path: Path, dir_mode: int = 0o700, file_mode: int | None = 0o644,
              owner: int | None = None, companion_owner: int | None = None) -> Path:  # fmt: skip
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "studies.db"
    if file_mode is not None:
        path.write_bytes(b"")
        path.chmod(file_mode)
        if owner is not None:
            os.chown(path, owner, -1)
    if companion_owner is not None:
        wal = folder / "studies.db-wal"
        wal.write_bytes(b"")
        wal.chmod(0o644)
        os.chown(wal, companion_owner, -1)
    folder.chmod(dir_mode)
    return path


_OTHER_USER = 65534  # nobody
_ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0, reason="giving a file to another user needs root"
)
SQLITE_CASES = {
    "a file others can write to": (dict(file_mode=0o664), "writable by other users"),
    "a file anyone can write to": (dict(file_mode=0o666), "writable by other users"),
    "a folder others can write to": (dict(dir_mode=0o775), "writable by other users"),
    "a folder like /tmp (sticky, anyone writes)": (dict(dir_mode=0o1777), "writable by other users"),
    "a new file in a folder others can write to": (dict(dir_mode=0o777, file_mode=None), "writable by other users"),
    "a file of another user": (dict(owner=_OTHER_USER), "belongs to another user"),
    "a write-ahead log of another user": (dict(companion_owner=_OTHER_USER), "belongs to another user"),
}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=_ROOT_ONLY) if "another user" in c else c for c in sorted(SQLITE_CASES)],
)
def test_cma_es_on_a_sqlite_file_others_can_write_to_needs_the_opt_in(
    compose, tmp_path: Path, case: str
) -> None:
    settings, reason = SQLITE_CASES[case]
    path = _database(tmp_path, **settings)  # type: ignore[arg-type]
    storage = f"storage=sqlite:///{path}"
    with pytest.raises(ConfigError, match="unpickle_shared_storage=true") as info:
        build_plan(compose(*QUICK, storage), tmp_path / "run")
    assert reason in str(info.value) and "\n" not in str(info.value)
    plan = build_plan(compose(*QUICK, storage, "unpickle_shared_storage=true"), tmp_path / "run")
    assert plan.sampler_name == "optuna.samplers.CmaEsSampler"


@pytest.mark.parametrize("state", ["not created yet", "created by this user, mode 0644"])
def test_cma_es_on_a_sqlite_file_only_this_user_writes_needs_nothing(
    compose, tmp_path: Path, state: str
) -> None:
    path = _database(tmp_path, file_mode=None if "not" in state else 0o644)
    plan = build_plan(compose(*QUICK, f"storage=sqlite:///{path}"), tmp_path / "run")
    assert plan.sampler_name == "optuna.samplers.CmaEsSampler"


def test_cma_es_on_a_linked_sqlite_file_needs_the_opt_in(compose, tmp_path: Path) -> None:
    path = _database(tmp_path)
    link = tmp_path / "db" / "link.db"
    link.symlink_to(path)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        build_plan(compose(*QUICK, f"storage=sqlite:///{link}"), tmp_path / "run")
