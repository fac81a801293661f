"""The spellings a secret takes on its way into text, so each can be scrubbed.

A value is seldom printed only as it is: an exception shows ``repr(value)``, a JSON document
escapes it, a URL or a form percent-encodes it (in upper or lower case, spaces as ``%20`` or
``+``), and a multi-line value such as a PEM key appears with its newlines escaped or one line
at a time (a stream scrubbed line by line never sees it whole). Each of these is registered as
a value of its own.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus

_PERCENT = re.compile(r"%[0-9A-F]{2}")
# The armour lines of a PEM block name what it is; they hold nothing secret.
_PEM_ARMOUR = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]+-----")


def forms_of(value: str, min_length: int) -> set[str]:
    """Every spelling of ``value`` (itself included) at least ``min_length`` characters long."""
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1]}
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms.add(repr(value.encode("utf-8", "surrogatepass"))[2:-1])  # as bytes show it
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value, safe="")):
        forms.add(encoded)
        forms.add(_PERCENT.sub(lambda m: m[0].lower(), encoded))
    if "\n" in value or "\r" in value:
        forms.add(" ".join(value.split()))  # a message folded onto one line
        for line in value.splitlines():
            piece = line.strip()
            if not _PEM_ARMOUR.fullmatch(piece):
                forms.add(piece)
    return {form for form in forms if len(form) >= min_length}
