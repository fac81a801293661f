"""The app's output on the sweep's console, as Hydra's launchers show it, a line at a time and
prefixed with the trial number (``[trial 3] hello``).

In the worker, `echoed` puts a line-prefixing stream in front of ``sys.stdout`` and
``sys.stderr`` (and so in front of the console handler of the job's logging, which Hydra
binds to ``sys.stdout`` when it configures the job). The worker's streams already scrub every
known secret; Ray sends what they write to the driver, which prints it as it is: without Ray's
own ``(pid=...)`` prefix and without folding similar lines together (`forward_worker_output`).
Output of a program the app starts, which writes to the file descriptors directly, reaches the
console unprefixed.

Ray ships a worker's lines to the driver a little later, on its own (its log monitor reads the
worker's log files); a driver that exits as its last trial ends would lose that trial's last
lines, often its error. So each trial's echo ends with a line of its own on both streams
(`end_of_output`, with the sweep's token), which the driver takes off its console
(`MarkerFilter`); before Ray is released the driver waits, for a bounded time, until the end
of every trial that ran has arrived (`TrialOutputs`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ugro_hpo.optimize import protocol as p
from ugro_hpo.process_policy import RAY_WORKER_LINES_ENV, set_defaults, swapped_streams
from ugro_hpo.security.streams import ForwardingStream
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart

log = logging.getLogger("ugro_hpo.sweeper")
STREAMS = ("stdout", "stderr")
OUTPUT_WAIT_S = 30.0
"""How long the driver waits, once the trials are over, for the rest of their output."""


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


END_OF_OUTPUT = "ugro_hpo: the output of trial {number} ends here ({token})"
"""The line that ends a trial's output on each stream (the driver never prints it)."""


def end_of_output(number: int, token: str) -> str:
    return END_OF_OUTPUT.format(number=number, token=token)


@contextlib.contextmanager
def echoed(number: int, token: str | None = None) -> Iterator[None]:
    """The job's stdout and stderr, prefixed with ``[trial <number>] ``; with the sweep's
    ``token``, each stream's echo ends with `end_of_output` (see the module)."""
    prefix = f"[trial {number}] "
    streams = {name: getattr(sys, name) for name in STREAMS}
    echoes = {name: TrialEcho(stream, prefix) for name, stream in streams.items()}
    for name, echo in echoes.items():
        setattr(sys, name, echo)
    try:
        yield
    finally:
        for name, stream in streams.items():
            echoes[name].finish()
            setattr(sys, name, stream)
            if token is not None:
                stream.write(end_of_output(number, token) + "\n")
                stream.flush()


class TrialOutputs:
    """In the driver: which trials ran (a listener of the trial events), which ends of output
    have arrived (told by `MarkerFilter`), and the wait for the rest (see the module)."""

    def __init__(self, token: str) -> None:
        self.token = token
        before, after = END_OF_OUTPUT.format(number="\0", token=token).split("\0")
        self.marker = re.compile(f"{re.escape(before)}([0-9]+){re.escape(after)}")
        self._numbers: dict[str, int] = {}
        self._ran: set[int] = set()
        self._ended: dict[str, set[int]] = {name: set() for name in STREAMS}
        self._changed = threading.Condition()

    def trial_started(self, start: TrialStart) -> None:
        self._numbers[start.trial_id] = start.number

    def trial_result(self, result: TrialResult) -> None:
        return None

    def trial_finished(self, end: TrialEnd) -> None:
        """A trial that ran in this sweep; not one the sweep's own end cut short (Ray ended
        its worker, which may never have printed its end)."""
        if end.trial_id in self._numbers and not p.cut_short(end.error):
            with self._changed:
                self._ran.add(end.number)

    def arrived(self, stream: str, number: int) -> None:
        with self._changed:
            self._ended[stream].add(number)
            self._changed.notify_all()

    def missing(self) -> list[int]:
        """Trials that ran and whose output has not all arrived."""
        with self._changed:
            arrived = set.intersection(*self._ended.values())
            return sorted(self._ran - arrived)

    def wait(self, timeout_s: float = OUTPUT_WAIT_S) -> list[int]:
        """Until every trial's output has arrived, or ``timeout_s``: what is still missing
        (a line says so)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.missing() and time.monotonic() < deadline:
                self._changed.wait(max(deadline - time.monotonic(), 0.0))
        missing = self.missing()
        if missing:
            log.warning("the end of the output of trial(s) %s did not reach this console in "
                        "%g s; Ray's worker logs hold it", missing, timeout_s)  # fmt: skip
        return missing

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While the sweep runs: the ends of output taken off the console, and noted."""
        filters = [MarkerFilter(getattr(sys, name), self, name) for name in STREAMS]
        with swapped_streams(*filters):
            yield


class MarkerFilter(ForwardingStream):
    """A console stream that passes everything on but the `end_of_output` lines of its sweep,
    which it tells `TrialOutputs` of. Ray prints each line with ``print``: the line, then its
    end in a second write, which goes too."""

    def __init__(self, target: Any, outputs: TrialOutputs, name: str) -> None:
        super().__init__(target)
        self.outputs = outputs
        self.name = name
        self._local = threading.local()  # per thread: a marker's line end still to drop

    def write(self, text: str) -> int:
        written = len(text)
        if getattr(self._local, "drop_end", False):
            self._local.drop_end = False
            if text.startswith("\n"):
                text = text[1:]
        kept = []
        for piece in re.split(r"(?<=\n)", text):
            found = self.outputs.marker.fullmatch(piece.removesuffix("\n"))
            if found is None:
                kept.append(piece)
                continue
            self.outputs.arrived(self.name, int(found[1]))
            self._local.drop_end = not piece.endswith("\n")
        passed = "".join(kept)
        if passed:
            self.target.write(passed)
        return written
