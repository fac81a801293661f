"""Keep credentials out of everything we print or write.

Three layers, each cheap: values stored under a secret-looking key are replaced (``api_key``,
``token``, ``password``, ...); credentials inside URLs (``scheme://user:password@host``) are
replaced; and every secret value we know of (from the environment, a ``.env`` file, a key
file, or a secret-named setting) is scrubbed from any text, wherever it turns up. The console
streams, our log file and every file we write pass through these.
"""

from __future__ import annotations

import io
import itertools
import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "***"
MIN_SECRET_LENGTH = 6  # shorter values would scrub ordinary words
# Words that make a key a secret wherever they appear in it ...
_SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "credential",
    "apikey",
    "privatekey",
    "accesskey",
    "authorization",
)
# ... and whole name segments that do (so `hf_token` is a secret, `max_tokens` is not).
_SECRET_SEGMENTS = {"token", "pwd", "cookie"}
_SECRET_PAIRS = {
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("session", "key"),
    ("auth", "token"),
}
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@"
)
_ASSIGNMENT = re.compile(
    r"(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>['\"]?[ \t]*[=:][ \t]*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;'\"}\]]+)"
)
_known: set[str] = set()
_SHELL_DIRECTORIES = {"PWD", "OLDPWD"}


def is_secret_name(name: object) -> bool:
    """Does a key name look like it holds a credential?"""
    if not isinstance(name, str):
        return False
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    segments = [s for s in re.split(r"[^a-z0-9]+", spaced) if s]
    joined = "".join(segments)
    if any(word in joined for word in _SECRET_WORDS):
        return True
    if _SECRET_SEGMENTS.intersection(segments):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(segments))


def mask(secret: str) -> str:
    """What may be shown of a secret: nothing for short ones, at most the last 4 characters."""
    if len(secret) < 20:
        return REDACTED
    return REDACTED + secret[-4:]


def register(*values: object) -> None:
    """Remember secret values so they are scrubbed from any text we print or write."""
    for value in values:
        if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
            _known.add(value.strip())


def register_environment(environ: Iterable[tuple[str, str]] | None = None) -> None:
    """Every environment variable with a secret-looking name is a secret value (except the
    shell's PWD and OLDPWD, which are working directories, not passwords)."""
    for name, value in environ if environ is not None else os.environ.items():
        if is_secret_name(name) and name not in _SHELL_DIRECTORIES:
            register(value)


def redact_url(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text``."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def redact_text(text: str) -> str:
    """All three layers on free text (log lines, error messages, YAML, CSV)."""
    if not text:
        return text
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    text = redact_url(text)
    return _ASSIGNMENT.sub(_redact_assignment, text)


def _redact_assignment(match: re.Match[str]) -> str:
    if not is_secret_name(match["key"]) or match["value"].strip("'\"") in (
        "",
        REDACTED,
        "null",
        "None",
    ):
        return match[0]
    return f"{match['key']}{match['sep']}{REDACTED}"


def redact_data(data: Any) -> Any:
    """A copy of nested dicts/lists with secret-named entries and secrets in strings replaced."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if is_secret_name(key) and value not in (None, ""):
                register(value if isinstance(value, str) else None)
                out[key] = REDACTED
            else:
                out[key] = redact_data(value)
        return out
    if isinstance(data, (list, tuple)):
        return type(data)(redact_data(v) for v in data)
    if isinstance(data, str):
        return redact_text(data)
    return data


class RedactingStream(io.TextIOBase):
    """A text stream that redacts what passes through it (stdout, stderr)."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(redact_text(text))
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return bool(self.target.isatty())

    def fileno(self) -> int:
        return int(self.target.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.target, "encoding", "utf-8"))
