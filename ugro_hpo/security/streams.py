"""Text streams that scrub what passes through them (a process's stdout and stderr).

A secret written in pieces (``print("password:", value)`` writes the label, a space, the value
and the newline separately) is only recognisable whole, so the stream scrubs whole lines: it
holds text until a line ends (``\\n`` or ``\\r``), until it is flushed, or until a line grows
past `RedactingStream.WINDOW` characters; then that much is scrubbed and written, every
character of it. A line longer than the window is scrubbed in windows that end at a space
where there is one, at least `TAIL` characters before what is held, so no known secret (none
is that long) is split; a redacted value that runs on past a window's end is redacted in the
next window too, up to where such a value ends.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ugro_hpo.security.assigned_values import BARE_END
from ugro_hpo.security.redaction import REDACTED, redact_text


class ForwardingStream(io.TextIOBase):
    """A text stream standing in for another (``target``): what it does not change, it asks
    the target."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:  # e.g. `buffer`, `errors`, `line_buffering`
        return getattr(self.target, name)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return bool(self.target.isatty())

    def fileno(self) -> int:
        return int(self.target.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.target, "encoding", "utf-8"))


class RedactingStream(ForwardingStream):
    """A text stream that redacts what passes through it, line by line (see the module)."""

    WINDOW = 1 << 20  # characters of one line held at most before a part of it is written
    TAIL = 16 * 1024  # held back when a window is written: longer than any secret's spelling

    def __init__(self, target: Any, redact: Callable[[str], str] | None = None) -> None:
        super().__init__(target)
        self.redact = redact or redact_text
        self._pending: list[str] = []
        self._size = 0
        self._inside_value = False  # the last window ended inside a redacted value
        self._lock = threading.RLock()
        _open_streams.add(self)

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        with self._lock:
            self._pending.append(text)
            self._size += len(text)
            if "\n" in text or "\r" in text:
                self._write_lines()
            elif self._size > self.WINDOW:
                self._write_windows()
        return len(text)

    def flush(self) -> None:
        """Write everything held, the last unfinished line too, then flush the target."""
        with self._lock:
            held = self._take()
            if held:
                self._write_scrubbed(held)
        self.target.flush()

    def _take(self) -> str:
        held = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        return held

    def _hold(self, text: str) -> None:
        self._pending = [text] if text else []
        self._size = len(text)

    def _write_lines(self) -> None:
        held = self._take()
        end = max(held.rfind("\n"), held.rfind("\r")) + 1
        self._write_scrubbed(held[:end])
        self._hold(held[end:])
        if self._size > self.WINDOW:
            self._write_windows()

    def _write_windows(self) -> None:
        held = self._take()
        while len(held) > self.WINDOW:
            limit = len(held) - self.TAIL
            space = max(held.rfind(" ", 0, limit), held.rfind("\t", 0, limit))
            cut = space + 1 if space >= limit // 2 else limit
            window = held[:cut]
            scrubbed = self._write_scrubbed(window)
            if scrubbed:
                self._inside_value = scrubbed.endswith(REDACTED) and not window.endswith(REDACTED)
            held = held[cut:]
        self._hold(held)

    def _write_scrubbed(self, text: str) -> str:
        if self._inside_value:
            end = BARE_END.search(text)
            text = text[end.start() :] if end else ""
            self._inside_value = end is None
        scrubbed = self.redact(text) if text else text
        if scrubbed:
            self.target.write(scrubbed)
        return scrubbed


_open_streams: weakref.WeakSet[RedactingStream] = weakref.WeakSet()


@atexit.register
def _flush_open_streams() -> None:
    """What a stream still holds when the process ends is written, not lost."""
    for stream in list(_open_streams):
        with contextlib.suppress(Exception):  # a closed target has nothing left to take
            stream.flush()
