"""Imports in the background: a module that fails is left for the real import to report."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from ugro_hpo.lazy import import_in_background


def test_background_imports_go_on_past_a_module_that_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported = threading.Event()
    (tmp_path / "preload_broken.py").write_text("raise ImportError('broken on purpose')\n")
    (tmp_path / "preload_good.py").write_text("import preload_flag\npreload_flag.EVENT.set()\n")
    flag = type(sys)("preload_flag")
    flag.EVENT = imported  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "preload_flag", flag)
    monkeypatch.syspath_prepend(str(tmp_path))
    import_in_background("preload_broken", "preload_good").join()
    assert imported.is_set()
    assert "preload_good" in sys.modules and "preload_broken" not in sys.modules
    monkeypatch.delitem(sys.modules, "preload_good")
