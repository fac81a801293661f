"""Writing a file so that no reader (nor a crash) sees half of it, and a link planted where it
goes is replaced, never written through; what stands there must be a regular file or nothing
(`security.paths.check_output_file`). Text is scrubbed of known secrets on the way."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ugro_hpo.process_policy import umask
from ugro_hpo.security.paths import OutputRefused, check_output_file
from ugro_hpo.security.redaction import redact_text


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory, secrets scrubbed."""
    write_bytes_atomic(path, redact_text(text).encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file beside ``path`` and rename it over ``path``.

    The temporary file is created exclusively under a random name, so a link planted where it
    would be is never followed, and the rename replaces a link at ``path`` itself rather than
    writing through it. Anything but a regular file (or a link to one) at ``path`` is refused,
    as is a path that cannot be written (one line, `OutputRefused`).
    """
    check_output_file(path, "output")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputRefused(f"output: cannot write {path} ({exc.strerror or exc})") from None
    try:
        os.fchmod(handle, 0o666 & ~umask())  # as a plain open() would have made it
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputRefused(f"output: cannot write {path} ({exc.strerror or exc})") from None
        raise
