"""The package passes its own linters: ruff (lint and format) and mypy."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(REPO / ".venv" / "bin")) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; it is part of the dev extra")
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "ugro_hpo", "tests", "scripts"],
        ["ruff", "format", "--check", "ugro_hpo", "tests", "scripts"],
    ],
    ids=["ruff-check", "ruff-format"],
)
def test_ruff(command: list[str]) -> None:
    result = subprocess.run(
        [_tool(command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "ugro_hpo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
