"""Work done ahead of need while the caller waits on something else: a result computed on a
thread, and modules imported before they are needed."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any


class Ahead:
    """Work started on a daemon thread while the caller waits on something else (a local Ray
    starting spends most of its 5 s waiting for its processes); `result` waits for it and
    raises what it raised. A daemon thread, so a caller that fails first is not kept waiting
    for it at exit."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ugro-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def import_quietly(*modules: str) -> None:
    """Import ``modules`` ahead of need; a failure is left for the import that needs the
    module, which can say what failed. Run it on one thread only, and let no other thread
    import the same packages meanwhile: two threads importing one package with circular
    imports can deadlock."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            continue
