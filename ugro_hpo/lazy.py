"""Re-exports that import their module only when used, so a package's public names can be
listed in its ``__init__`` without importing Ray, Optuna or MLflow at start-up."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds ``name`` in ``package.<names[name]>``."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    return __getattr__


def import_in_background(*modules: str) -> threading.Thread:
    """Import ``modules`` on a daemon thread while the caller waits on something else (a local
    Ray starting spends most of its 5 s waiting for its processes); join the thread before
    importing any of them, or anything they import, on another thread: two threads importing
    the same package with circular imports can deadlock. A failure is left for the real
    import to report, where it can say what failed."""

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # reported by the import that needs the module
                continue

    thread = threading.Thread(target=load, name="ugro-preload", daemon=True)
    thread.start()
    return thread
