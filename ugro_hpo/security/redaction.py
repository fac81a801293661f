"""Keep credentials out of everything we print or write.

Three layers, each cheap, applied to any text before it leaves the process:

1. every secret value we know of (secret-named environment variables, every value of `.env`,
   key files, secret-named settings) is replaced wherever it stands, also percent-encoded;
2. URLs of any scheme lose the password of their user part (which may hold ``/``, ``+``, ``=``
   or ``@``) and the values of secret-named query parameters (``?password=...``);
3. a value assigned to a secret-looking name is replaced, wherever the assignment stands in a
   line (``ValueError: password=...``, ``"api_key": "..."``, ``Authorization: Bearer ...``): a
   quoted value up to its closing quote, an unquoted one up to the end of the line (or a
   ``; `` separating assignments), so spaces and commas in a password do not end it early.

Nested data (configs, summaries) is redacted by key first (`redact_data`), then as text.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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
_SHELL_DIRECTORIES = {"PWD", "OLDPWD"}
# `.env` entries that name things rather than hold secrets; every other value is a secret.
PLAIN_DOTENV_SETTINGS = frozenset({"WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE"})

_URL = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s'\"<>`]+)"
)
_KEY = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>['\"]?[ \t]*[=:][ \t]*)"
)
_QUOTES = "'\""
_PLAIN_VALUES = {"", "null", "None", "none", "~"}

_known: set[str] = set()


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
        if not isinstance(value, str):
            continue
        text = value.strip()
        if len(text) >= MIN_SECRET_LENGTH:
            _known.add(text)
            _known.add(quote(text, safe=""))  # as it appears inside a URL


def known_secrets() -> frozenset[str]:
    """The values registered so far (for handing a scrubber to another process)."""
    return frozenset(_known)


def register_environment(environ: Iterable[tuple[str, str]] | None = None) -> None:
    """Every environment variable with a secret-looking name is a secret value (except the
    shell's PWD and OLDPWD, which are working directories, not passwords)."""
    for name, value in environ if environ is not None else os.environ.items():
        if is_secret_name(name) and name not in _SHELL_DIRECTORIES:
            register(value)


def register_dotenv(values: Mapping[str, str | None]) -> None:
    """A `.env` file holds secrets: every value in it is one, except plain W&B settings."""
    register(*(v for k, v in values.items() if k not in PLAIN_DOTENV_SETTINGS))


def redact_url(text: str) -> str:
    """Replace URL passwords and secret query values (``scheme://user:***@host/db?password=***``)."""
    return _URL.sub(_redact_one_url, text)


def _redact_one_url(match: re.Match[str]) -> str:
    rest = match["rest"]
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    at = head.rfind("@")
    if at < 0:
        at = rest.rfind("@")  # a password holding '?' or '#'
    if at >= 0:
        user, colon, password = rest[:at].partition(":")
        if colon and password and password != REDACTED:
            rest = f"{user}:{REDACTED}{rest[at:]}"
            at = len(user) + 1 + len(REDACTED)
    query_start = rest.find("?", max(at, 0))
    if query_start >= 0:
        pairs = re.split(r"([&;])", rest[query_start + 1 :])
        for index in range(0, len(pairs), 2):
            name, equals, _value = pairs[index].partition("=")
            if equals and is_secret_name(name):
                pairs[index] = f"{name}={REDACTED}"
        rest = rest[: query_start + 1] + "".join(pairs)
    return match["scheme"] + rest


def redact_assignments(text: str) -> str:
    """Replace values assigned to secret-looking names, wherever they stand in a line."""
    out: list[str] = []
    cursor = 0
    for match in _KEY.finditer(text):
        if match.start() < cursor or not is_secret_name(match["key"]):
            continue
        start = match.end()
        end = _value_end(text, start)
        value = text[start:end]
        if value.strip(_QUOTES) in _PLAIN_VALUES or value.lstrip(_QUOTES).startswith(REDACTED):
            continue
        if value[:1] in _QUOTES:
            replacement = (
                value[0]
                + REDACTED
                + (value[-1] if len(value) > 1 and value[-1] == value[0] else "")
            )
        else:
            replacement = REDACTED
        out += [text[cursor:start], replacement]
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _value_end(text: str, start: int) -> int:
    """A quoted value ends at its closing quote; a bare one at the end of the line, a quote, or
    a semicolon followed by a space (``a=1; b=2``): spaces and commas do not end it."""
    if start < len(text) and text[start] in _QUOTES:
        quote_char = text[start]
        index = start + 1
        while index < len(text):
            if text[index] == "\\":
                index += 2
                continue
            if text[index] == quote_char or text[index] == "\n":
                return index + (text[index] == quote_char)
            index += 1
        return len(text)
    end = start
    while end < len(text) and text[end] not in "\r\n'\"":
        if text[end] == ";" and text[end + 1 : end + 2].isspace():
            break
        end += 1
    return end


def redact_text(text: str) -> str:
    """All three layers on free text (log lines, error messages, YAML, CSV, JSON)."""
    if not text:
        return text
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return redact_assignments(redact_url(text))


def redact_data(data: Any) -> Any:
    """A copy of nested dicts/lists with secret-named entries and secrets in strings replaced."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if is_secret_name(key) and value not in (None, ""):
                register(value if isinstance(value, str) else None)
                out[key] = REDACTED
            else:
                out[redact_text(key) if isinstance(key, str) else key] = redact_data(value)
        return out
    if isinstance(data, (list, tuple)):
        return type(data)(redact_data(v) for v in data)
    if isinstance(data, str):
        return redact_text(data)
    return data


@dataclass(frozen=True)
class SecretDigests:
    """Salted digests of the secrets the driver knows, so a trial's process can scrub them from
    its error text and output without ever being given them (the digests travel with the
    trial's settings; the secrets stay in the driver)."""

    salt: bytes
    digests: frozenset[bytes]
    lengths: tuple[int, ...]  # longest first

    MAX_SCAN = 20_000  # characters of one text searched; error texts are cut shorter anyway

    @classmethod
    def of_known(cls) -> SecretDigests:
        salt = secrets.token_bytes(16)
        values = known_secrets()
        return cls(
            salt=salt,
            digests=frozenset(_digest(salt, v) for v in values),
            lengths=tuple(sorted({len(v) for v in values}, reverse=True)),
        )

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced, then the pattern layers applied."""
        if not text:
            return text
        text = text[: self.MAX_SCAN]
        for length in self.lengths:
            index = 0
            while index + length <= len(text):
                if _digest(self.salt, text[index : index + length]) in self.digests:
                    text = text[:index] + REDACTED + text[index + length :]
                    index += len(REDACTED)
                else:
                    index += 1
        return redact_text(text)


def _digest(salt: bytes, value: str) -> bytes:
    return hashlib.blake2b(
        value.encode("utf-8", "surrogatepass"), key=salt, digest_size=16
    ).digest()


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
    """A text stream that redacts what passes through it (stdout, stderr)."""

    def __init__(self, target: Any, redact: Any = None) -> None:
        super().__init__(target)
        self.redact = redact or redact_text

    def write(self, text: str) -> int:
        self.target.write(self.redact(text))
        return len(text)
