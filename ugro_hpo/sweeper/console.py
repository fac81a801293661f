"""The app's output on the sweep's console, as Hydra's launchers show it, a line at a time and
prefixed with the trial number (``[trial 3] hello``).

In the worker, `echoed` puts a line-prefixing stream in front of ``sys.stdout`` and
``sys.stderr`` (and so in front of the console handler of the job's logging, which Hydra
binds to ``sys.stdout`` when it configures the job). The worker's streams already scrub every
known secret; Ray sends what they write to the driver, which prints it as it is: without Ray's
own ``(pid=...)`` prefix and without folding similar lines together (`forward_worker_output`).
Output of a program the app starts, which writes to the file descriptors directly, reaches the
console unprefixed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from ugro_hpo.process_policy import RAY_WORKER_LINES_ENV, set_defaults
from ugro_hpo.security.streams import ForwardingStream


def forward_worker_output() -> None:
    """In the driver, before Ray is imported: Ray's settings for printing the workers' lines
    unchanged (they are read when Ray is imported)."""
    set_defaults(RAY_WORKER_LINES_ENV)


MAX_PENDING = 65_536
"""Characters of a line without its end (a progress bar redrawn with ``\\r``) that wait."""


class TrialEcho(ForwardingStream):
    """Writes whole lines to ``target``, each after ``prefix``; a line without its end yet
    waits for it (or for `finish`, or until it is too long to wait)."""

    def __init__(self, target: Any, prefix: str) -> None:
        super().__init__(target)
        self.prefix = prefix
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_PENDING:
            lines.append(self._pending)
            self._pending = ""
        if lines:
            self.target.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.target.flush()
        return len(text)

    def finish(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self.write(pending + "\n")


@contextlib.contextmanager
def echoed(number: int) -> Iterator[None]:
    """The job's stdout and stderr, prefixed with ``[trial <number>] `` (see the module)."""
    prefix = f"[trial {number}] "
    streams = {name: getattr(sys, name) for name in ("stdout", "stderr")}
    echoes = {name: TrialEcho(stream, prefix) for name, stream in streams.items()}
    for name, echo in echoes.items():
        setattr(sys, name, echo)
    try:
        yield
    finally:
        for name, stream in streams.items():
            echoes[name].finish()
            setattr(sys, name, stream)
