"""Work done ahead of need: its result or its error reaches the caller; a module that fails to
import is left for the real import to report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ugro_hpo.lazy import Ahead, import_quietly


def test_work_ahead_hands_over_its_result_or_its_error() -> None:
    assert Ahead(lambda: 41 + 1).result() == 42

    def fails() -> None:
        raise ValueError("storage: cannot open it")

    with pytest.raises(ValueError, match="cannot open"):
        Ahead(fails).result()


def test_quiet_imports_go_on_past_a_module_that_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ahead_broken.py").write_text("raise ImportError('broken on purpose')\n")
    (tmp_path / "ahead_good.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_quietly("ahead_broken", "ahead_good")
    assert "ahead_good" in sys.modules and "ahead_broken" not in sys.modules
    monkeypatch.delitem(sys.modules, "ahead_good")
