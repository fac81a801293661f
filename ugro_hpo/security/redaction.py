"""Keep credentials out of everything we print or write.

Three layers, each linear in the length of its input, applied to any text before it leaves
the process:

1. every secret value we know of (secret-named environment variables, every value of `.env`,
   key files, secret-named settings) is replaced wherever it stands, in each of its spellings
   (`secret_forms`: its repr, JSON-escaped, percent- and ``+``-encoded in either case, a
   multi-line value line by line);
2. URLs of any scheme lose the password of their user part (which may hold ``/``, ``+``, ``=``
   or ``@``) and the values of secret-named query parameters (``?password=...``);
3. a value assigned to a secret-looking name is replaced, wherever the assignment stands
   (``ValueError: password=...``, ``"api_key": "..."``, ``Authorization: Bearer ...``): a
   literal of any Python or JSON shape up to where it closes (`assigned_values`), a bare one
   up to the end of the line (or a ``; `` separating assignments), so spaces and commas in a
   password do not end it early.

Values shorter than `MIN_SECRET_LENGTH` characters are not scrubbed by the first layer (they
would scrub ordinary words); the other two layers do not depend on length.

Nested data (configs, summaries) is redacted by key first (`redact_data`), then as text. A
trial's process scrubs with `digests.SecretDigests`; streams are scrubbed line by line by
`streams.RedactingStream`.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ugro_hpo.security.assigned_values import BARE_END, find_value
from ugro_hpo.security.secret_forms import forms_of

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
_MEASURES = {"accuracy", "acc", "f1", "count", "counts", "length", "len", "loss", "rate", "ratio",
             "precision", "recall", "budget", "limit", "share", "fraction"}  # fmt: skip
"""A segment after ``token`` that makes the name a measure of tokens (``eval_token_accuracy``,
``token_count``), not a credential."""
_SECRET_PAIRS = {
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("session", "key"),
    ("auth", "token"),
}
# Every secret name holds one of these (a cheap test before the full one).
_SECRET_HINT = re.compile(r"pass|secret|credential|key|auth|token|pwd|cookie", re.IGNORECASE)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEGMENT_SPLIT = re.compile(r"[^a-z0-9]+")
_SHELL_DIRECTORIES = {"PWD", "OLDPWD"}
# `.env` entries that name things rather than hold secrets; every other value is a secret.
PLAIN_DOTENV_SETTINGS = frozenset({"WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE"})

_URL = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*+://)(?P<rest>[^\s'\"<>`]++)"
)
_URL_QUERY_OR_FRAGMENT = re.compile(r"[?#]")
_QUERY_SEPARATORS = re.compile(r"([&;])")
_KEY = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>['\"]?[ \t]*[=:][ \t]*)"
)
_PLAIN_VALUES = {"", "null", "None", "none", "~"}
_PLAIN_LONGEST = max(map(len, _PLAIN_VALUES))
_STRING_OPENING = re.compile(r"[rRbBuUfF]{0,2}('''|\"\"\"|'|\")")

_known: set[str] = set()
_ordered: list[str] = []  # _known, longest first (a longer spelling before its parts)


def is_secret_name(name: object) -> bool:
    """Does a key name look like it holds a credential?"""
    if not isinstance(name, str) or not _SECRET_HINT.search(name):
        return False
    if len(name) > 200:
        return _is_secret_name(name)
    return _cached_is_secret_name(name)


def _is_secret_name(name: str) -> bool:
    spaced = _CAMEL.sub(r"\1_\2", name).lower()
    segments = [s for s in _SEGMENT_SPLIT.split(spaced) if s]
    joined = "".join(segments)
    if any(word in joined for word in _SECRET_WORDS):
        return True
    measured = {a for a, b in itertools.pairwise(segments) if b in _MEASURES}
    if _SECRET_SEGMENTS.intersection(segments) - measured:
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(segments))


_cached_is_secret_name = functools.lru_cache(maxsize=4096)(_is_secret_name)


def mask(secret: str) -> str:
    """What may be shown of a secret: nothing for short ones, at most the last 4 characters."""
    if len(secret) < 20:
        return REDACTED
    return REDACTED + secret[-4:]


def register(*values: object) -> None:
    """Remember secret values so they are scrubbed from any text we print or write, in every
    spelling they take (see `secret_forms`). Values shorter than MIN_SECRET_LENGTH are not."""
    added = False
    for value in values:
        if not isinstance(value, str):
            continue
        text = value.strip()
        if len(text) >= MIN_SECRET_LENGTH:
            forms = forms_of(text, MIN_SECRET_LENGTH) - _known
            if forms:
                _known.update(forms)
                added = True
    if added:
        _ordered[:] = sorted(_known, key=len, reverse=True)


def known_secrets() -> frozenset[str]:
    """The values registered so far, every spelling (for handing a scrubber to another
    process as digests)."""
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


def redact_known(text: str) -> str:
    """The first layer: every registered value replaced, longest first."""
    for value in _ordered:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_url(text: str) -> str:
    """Replace URL passwords and secret query values (``scheme://user:***@host/db?password=***``)."""
    if "://" not in text:
        return text
    return _URL.sub(_redact_one_url, text)


def _redact_one_url(match: re.Match[str]) -> str:
    rest = match["rest"]
    head = _URL_QUERY_OR_FRAGMENT.split(rest, maxsplit=1)[0]
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
        pairs = _QUERY_SEPARATORS.split(rest[query_start + 1 :])
        for index in range(0, len(pairs), 2):
            name, equals, _value = pairs[index].partition("=")
            if equals and is_secret_name(name):
                pairs[index] = f"{name}={REDACTED}"
        rest = rest[: query_start + 1] + "".join(pairs)
    return match["scheme"] + rest


def redact_assignments(text: str) -> str:
    """Replace values assigned to secret-looking names, wherever they stand.

    Linear in the length of ``text``: the search for names resumes after each replaced value;
    a value left alone (``null``, ``***``) is recognised from its first few characters; and
    a multi-line value is read only where no such value was read before."""
    out: list[str] = []
    cursor = 0  # text before it is in `out`
    position = 0
    multiline_from = 0  # multi-line values read from here on only
    while True:
        match = _KEY.search(text, position)
        if match is None:
            break
        position = match.end()
        if not is_secret_name(match["key"]) or _left_alone(text, position):
            continue
        value = find_value(text, position, multiline=position >= multiline_from)
        if value.multiline_failed:
            multiline_from = value.scanned
        replacement = value.opening + REDACTED + value.closing if value.opening else REDACTED
        out += [text[cursor:position], replacement]
        cursor = position = value.end
    out.append(text[cursor:])
    return "".join(out)


def _left_alone(text: str, start: int) -> bool:
    """A value that is already redacted or says there is none (``null``, ``None``, ``~``,
    empty), told from its first few characters: it is never read in full."""
    window = start + _PLAIN_LONGEST + 1
    opening = _STRING_OPENING.match(text, start)
    if opening:
        inner = opening.end()
        if text.startswith(REDACTED, inner):
            return True
        end = text.find(opening[1], inner, window + len(opening[0]))
        return end >= 0 and text[inner:end] in _PLAIN_VALUES
    if text.startswith(REDACTED, start):
        return True
    ending = BARE_END.search(text, start, window)
    end = ending.start() if ending else len(text) if len(text) <= window else -1
    return end >= 0 and text[start:end].strip() in _PLAIN_VALUES


def redact_text(text: str) -> str:
    """All three layers on free text (log lines, error messages, YAML, CSV, JSON)."""
    if not text:
        return text
    return redact_assignments(redact_url(redact_known(text)))


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
