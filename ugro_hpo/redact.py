"""Keep credentials out of everything we print or write."""

from __future__ import annotations

import re

REDACTED = "***"
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@"
)


def redact_url(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text``."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
