"""Scrub what a trial's process writes to its file descriptors 1 and 2.

Python's ``sys.stdout`` is only one way out: ``os.write(1, ...)``, a C library's ``printf`` and
a subprocess's output go to the descriptors themselves, and from there to Ray's worker logs
(and, with verbose output, the driver's console). So in a Ray worker, descriptors 1 and 2 are
pointed at pipes read by a small helper process, which scrubs what it reads line by line
(`streams.RedactingStream`, with the trial's `digests.SecretDigests`) and writes it where the
descriptors pointed before. A process of its own, not a thread: a thread would need the
trial's interpreter lock, which a C library writing a long text can hold while it waits for
the pipe to drain. When the trial's process ends, the helper reads what is left in the pipes,
writes it, and ends too, so nothing written is lost, even when the process is killed.

What it cannot see: a file the trial writes itself, and output sent elsewhere than 1 and 2
(another descriptor, a socket, a terminal opened by name). A line that stops without an end
(``print(..., end="")``) is written once nothing more comes for `IDLE_S` seconds.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import selectors
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from ugro_hpo.security.digests import SecretDigests

IDLE_S = 0.2
_DESCRIPTORS = (1, 2)
_PIPE_BYTES = 1 << 20  # a larger pipe, so a burst of output seldom waits for the helper
_F_SETPIPE_SZ = 1031  # fcntl's name for it (Linux), absent from Python's fcntl before 3.10


@dataclass
class _Helper:
    process: subprocess.Popen[bytes]
    originals: dict[int, int]  # descriptor -> a copy of where it pointed before
    salt: bytes


_helper: _Helper | None = None


def scrub_descriptors(digests: SecretDigests) -> bool:
    """Point descriptors 1 and 2 at the scrubbing helper (once per process and set of
    secrets); False when that cannot be done here (the caller scrubs Python's streams)."""
    global _helper
    if _helper is not None:
        if _helper.salt == digests.salt and _helper.process.poll() is None:
            return True
        restore()
    try:
        _helper = _start(digests)
    except (OSError, ValueError):
        return False
    return True


def restore() -> None:
    """Point the descriptors back where they were; the helper writes what it holds and ends."""
    global _helper
    helper, _helper = _helper, None
    if helper is None:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    for descriptor, original in helper.originals.items():
        os.dup2(original, descriptor)
        os.close(original)
    with contextlib.suppress(subprocess.TimeoutExpired):
        helper.process.wait(timeout=10)


def _start(digests: SecretDigests) -> _Helper:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    originals = {fd: os.dup(fd) for fd in _DESCRIPTORS}
    pipes = {fd: os.pipe() for fd in _DESCRIPTORS}
    config_read, config_write = os.pipe()
    streams = [[pipes[fd][0], originals[fd]] for fd in _DESCRIPTORS]
    try:
        for read, _write in pipes.values():
            with contextlib.suppress(OSError):
                import fcntl

                fcntl.fcntl(read, _F_SETPIPE_SZ, _PIPE_BYTES)
        process = subprocess.Popen(
            [sys.executable, "-m", "ugro_hpo.security.descriptors", str(config_read)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=originals[2],
            pass_fds=(config_read, *(r for r, _ in pipes.values()), *originals.values()),
            start_new_session=True,  # a Ctrl-C meant for the trial does not stop it first
        )
        with os.fdopen(config_write, "wb") as config:
            config.write(json.dumps({"streams": streams, "digests": _encode(digests)}).encode())
    except BaseException:
        for fd in (*originals.values(), *(f for pair in pipes.values() for f in pair)):
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    finally:
        os.close(config_read)
    for descriptor, (read, write) in pipes.items():
        os.dup2(write, descriptor)
        os.close(write)
        os.close(read)
    return _Helper(process, originals, digests.salt)


def _encode(digests: SecretDigests) -> dict[str, Any]:
    return {
        "salt": digests.salt.hex(),
        "digests": sorted(d.hex() for d in digests.digests),
        "lengths": list(digests.lengths),
        "base": digests.base,
        "mix": digests.mix,
        "starts": [[k, list(v)] for k, v in digests.starts],
    }


def _decode(data: dict[str, Any]) -> SecretDigests:
    return SecretDigests(
        salt=bytes.fromhex(data["salt"]),
        digests=frozenset(bytes.fromhex(d) for d in data["digests"]),
        lengths=tuple(data["lengths"]),
        base=int(data["base"]),
        mix=int(data["mix"]),
        starts=tuple((int(k), tuple(v)) for k, v in data["starts"]),
    )


class _Descriptor:
    """What a RedactingStream writes to: a descriptor, given bytes as they came in (invalid
    UTF-8 passes through unchanged, by way of surrogate escapes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "surrogateescape")
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            view = view[written:]
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fd


def _serve(config_fd: int) -> None:
    """The helper: scrub each pipe into its descriptor until every pipe is closed."""
    from ugro_hpo.security.streams import RedactingStream

    with os.fdopen(config_fd, "rb") as config_file:
        config = json.loads(config_file.read())
    digests = _decode(config["digests"])
    selector = selectors.DefaultSelector()
    held: set[int] = set()
    for read, out in config["streams"]:
        stream = RedactingStream(_Descriptor(out), _guarded(digests.scrub))
        decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        selector.register(read, selectors.EVENT_READ, (stream, decoder))
    while selector.get_map():
        events = selector.select(timeout=IDLE_S if held else None)
        if not events:  # quiet for a while: an unfinished line is written as it is
            for key in selector.get_map().values():
                key.data[0].flush()
            held.clear()
            continue
        for key, _mask in events:
            stream, decoder = key.data
            try:
                data = os.read(key.fd, 1 << 16)
            except InterruptedError:
                continue
            if data:
                stream.write(decoder.decode(data))
                held.add(key.fd)
                continue
            stream.write(decoder.decode(b"", final=True))
            stream.flush()
            selector.unregister(key.fd)
            os.close(key.fd)
            held.discard(key.fd)


def _guarded(scrub: Any) -> Any:
    """A scrubber that, should it fail, withholds the text rather than pass it on unscrubbed."""

    def guarded(text: str) -> str:
        try:
            return str(scrub(text))
        except Exception as exc:
            return f"[ugro_hpo: {len(text)} characters withheld: scrubbing failed ({type(exc).__name__})]\n"

    return guarded


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
