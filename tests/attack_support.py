"""Shared by the attack tests (tests/security/): a finished study to tamper with, the
stored-study commands run in this process, and checks that nothing was written, ran or leaked.
The fixtures are made available to every test by conftest.py."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest

VICTIM = "victim"


@pytest.fixture(scope="session")
def victim_db(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> Path:
    """A real finished study (3 synthetic trials), made once; tests tamper with copies."""
    from ugro_hpo import run
    from ugro_hpo.config import compose

    root = tmp_path_factory.mktemp("victim")
    cfg = compose("objective=synthetic", "search_space=quadratic", "tracking=none", "report=false",
                  "n_trials=3", "max_steps=2", "eval_every=1", "scheduler=fifo",
                  f"study_name={VICTIM}", f"outputs_dir={root / 'outputs'}")  # fmt: skip
    result = run(cfg, run_dir=str(root / "run"), echo=False)
    assert result.summary["counts"]["complete"] == 3
    db = root / "outputs" / "studies.db"
    with sqlite3.connect(db) as connection:  # the study lives in the write-ahead log until now
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


@dataclass
class StoredCopy:
    """A copy of the victim study in ``root/outputs/studies.db``, with ways to tamper with it."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "outputs" / "studies.db"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=VICTIM, storage=self.url)

    def set_attr(self, key: str, value: Any) -> None:
        self.study().set_user_attr(key, value)

    def set_raw_attr(self, key: str, value_json: str) -> None:
        """Write an attribute's JSON as a hostile driver could, bypassing Optuna's encoder."""
        with sqlite3.connect(self.db) as connection:
            changed = connection.execute(
                "UPDATE study_user_attributes SET value_json = ? WHERE key = ?", (value_json, key)
            ).rowcount
        assert changed == 1

    def sql(self, statement: str, *args: Any) -> None:
        with sqlite3.connect(self.db) as connection:
            connection.execute(statement, args)

    def config(self) -> dict[str, Any]:
        return dict(self.study().user_attrs["ugro:config"])


@pytest.fixture
def stored(victim_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StoredCopy:
    """The victim study copied into a fresh working directory (the commands' cwd)."""
    (tmp_path / "outputs").mkdir()
    shutil.copy(victim_db, tmp_path / "outputs" / "studies.db")
    monkeypatch.chdir(tmp_path)
    return StoredCopy(tmp_path)


@dataclass
class Outcome:
    code: int | str | None
    out: str
    err: str


@pytest.fixture
def ugro(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Run `ugro <args>` in this process; returns its exit code and output."""
    from ugro_hpo.cli import ugro as cli

    def call(*args: str) -> Outcome:
        capsys.readouterr()
        try:
            cli.main(list(args))
            code: int | str | None = 0
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    yield call


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time, but the study database
    (SQLite moves its write-ahead log into the file when a reader closes it)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("studies.db")
    }


def files_containing(root: Path, values: list[str]) -> list[str]:
    """Files under ``root`` that hold any of ``values`` (as bytes, in any format)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {v[:6]}..." for v in values if v.encode() in data]
    return hits


def one_line_error(outcome: Outcome) -> str:
    """The refusal's one line (exit code 2, no traceback), returned for further checks."""
    assert outcome.code == 2, (outcome.code, outcome.err[-2000:])
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ugro_hpo: error: "), outcome.err[-2000:]
    assert "Traceback" not in outcome.err
    return lines[0]
