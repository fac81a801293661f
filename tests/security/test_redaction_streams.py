"""A redacting stream passes every character of what is written to it but the secrets: whole
lines however they are written (a secret split over several writes included), lines far longer
than its window, unfinished lines once flushed; and, in a trial's process, what is written to
the file descriptors 1 and 2 themselves (os.write, a C library, a subprocess)."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ugro_hpo.security.digests import SecretDigests
from ugro_hpo.security.redaction import REDACTED, redact_text, register
from ugro_hpo.security.streams import RedactingStream


def _secret() -> str:
    value = "Sx-" + secrets.token_hex(10)
    register(value)
    return value


SCRUBBERS: dict[str, Callable[[], Callable[[str], str]]] = {
    "the driver's (values)": lambda: redact_text,
    "a trial's (digests)": lambda: SecretDigests.of_known().scrub,
}


@pytest.mark.parametrize("scrubber", sorted(SCRUBBERS))
def test_a_line_of_100_000_characters_arrives_whole_but_its_secret(scrubber: str) -> None:
    secret = _secret()
    sink = io.StringIO()
    stream = RedactingStream(sink, SCRUBBERS[scrubber]())
    line = "".join(secrets.choice("abcdefgh ") for _ in range(100_000))
    print(line + secret, file=stream)
    assert sink.getvalue() == line + REDACTED + "\n"


@pytest.mark.parametrize("scrubber", sorted(SCRUBBERS))
def test_a_secret_written_in_pieces_is_still_found(scrubber: str) -> None:
    secret = _secret()
    sink = io.StringIO()
    stream = RedactingStream(sink, SCRUBBERS[scrubber]())
    for piece in ("connecting with ", secret[:5], secret[5:12], secret[12:], " now\n"):
        stream.write(piece)
    print("password:", "hunter2-x", file=stream)  # label, space, value and newline: four writes
    assert sink.getvalue() == f"connecting with {REDACTED} now\npassword: {REDACTED}\n"


@pytest.mark.parametrize("scrubber", sorted(SCRUBBERS))
def test_a_line_longer_than_the_window_is_written_in_windows_and_loses_nothing(
    scrubber: str,
) -> None:
    secret = _secret()
    sink = io.StringIO()
    stream = RedactingStream(sink, SCRUBBERS[scrubber]())
    window = RedactingStream.WINDOW

    def words(characters: int) -> str:
        return " ".join(secrets.token_hex(4) if i % 997 else secret for i in range(characters // 9))

    # 3 MB on one line: known secrets everywhere (a window ends near some of them), and a
    # redacted value of 40,000 characters that the first window ends inside of.
    text = (words(window - 30_000) + " password=" + words(40_000).replace(secret, "pw") + "; "
            + words(2 * window))  # fmt: skip
    for start in range(0, len(text), 4096):
        stream.write(text[start : start + 4096])
    assert "\n" not in sink.getvalue() and len(sink.getvalue()) > window  # written, not held
    stream.write("\n")
    assert secret not in sink.getvalue()
    assert sink.getvalue() == redact_text(text.replace(secret, REDACTED)) + "\n"


def test_an_unfinished_line_is_written_when_flushed_and_at_exit(tmp_path: Path) -> None:
    sink = io.StringIO()
    stream = RedactingStream(sink)
    stream.write("progress 50%")
    assert sink.getvalue() == ""
    stream.flush()
    assert sink.getvalue() == "progress 50%"
    code = (
        "import sys\nfrom ugro_hpo.security.streams import RedactingStream\n"
        "sys.stdout = RedactingStream(sys.stdout)\nsys.stdout.write('no newline, api_key=abc123x')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout == "no newline, api_key=***"


def test_a_carriage_return_ends_a_line_so_progress_bars_keep_moving() -> None:
    sink = io.StringIO()
    stream = RedactingStream(sink)
    stream.write("\r 10%")
    stream.write("\r 20%")
    assert sink.getvalue() == "\r 10%\r"


# -- the file descriptors of a trial's process -------------------------------------------------

_CHILD = """
import json, os, subprocess, sys, time
from ugro_hpo.security import descriptors, redaction
from ugro_hpo.security.digests import SecretDigests
secret = sys.argv[1]
redaction.register(secret)
assert descriptors.scrub_descriptors(SecretDigests.of_known())
os.write(1, f"direct {secret} end\\n".encode())
os.write(1, b"bytes \\xff\\xfe kept " + secret.encode() + b"\\n")
subprocess.run([sys.executable, "-c", f"import sys; print('child', {secret!r}); "
                f"sys.stderr.write('child err {secret}\\\\n')"], check=True)
print("python", secret, "password=hunter2 x", flush=True)
os.write(1, ("y" * 100_000 + secret + "\\n").encode())
os.write(2, b"unfinished " + secret.encode())
"""


def test_what_a_process_writes_to_its_descriptors_is_scrubbed_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    secret = "Dx-" + secrets.token_hex(10)
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        subprocess.run([sys.executable, "-c", _CHILD, secret], stdout=stdout, stderr=stderr,
                       timeout=120, check=True)  # fmt: skip
    # The process has ended; its helper writes what is left and ends after it.
    for _ in range(100):
        if err.read_bytes().endswith(b"unfinished ***"):
            break
        time.sleep(0.1)
    stdout_bytes, stderr_bytes = out.read_bytes(), err.read_bytes()
    assert secret.encode() not in stdout_bytes + stderr_bytes
    assert stdout_bytes.splitlines() == [
        b"direct *** end", b"bytes \xff\xfe kept ***", b"child ***", b"python *** password=***",
        b"y" * 100_000 + b"***",
    ]  # fmt: skip
    assert stderr_bytes == b"child err ***\nunfinished ***"


def test_the_helper_is_given_digests_never_the_secrets(tmp_path: Path) -> None:
    from ugro_hpo.security import descriptors

    secret = "Hx-" + secrets.token_hex(10)
    register(secret)
    encoded = json.dumps(descriptors._encode(SecretDigests.of_known()))
    assert secret not in encoded and secret[3:12] not in encoded
