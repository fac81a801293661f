"""Where a value assigned to a name ends, in free text (``password=...``, ``"token": ...``).

The value may be written in any Python or JSON literal shape: a quoted string with or without
a prefix (``b'...'``, ``r"..."``, ``u'...'``, ``f'...'``, ``rb"..."``), triple-quoted, a list,
tuple, set or mapping (``['a', 'b']``, ``("a",)``, ``{"k": "v"}``, nested, across lines), or a
bare word running to the end of the line (or to the next quoted key, the comma before that key
left out: ``{"api_token": 12, "x": 1}`` stays a mapping).

Every scan is a compiled pattern whose repetitions cannot overlap (possessive), so it costs
time linear in what it reads. A value that may span lines (a triple-quoted string, brackets)
is read at most `MAX_MULTILINE` characters ahead; when it does not close there, it ends with
its line, and the caller (`redaction.redact_assignments`) reads no further multi-line value
that starts inside the stretch already read, so no text is read twice over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_MULTILINE = 64 * 1024

_PREFIX = re.compile(r"[rRbBuUfF]{1,2}(?=['\"])")
_SINGLE = {q: re.compile(rf"(?:[^\\\n{q}]++|\\[\s\S])*+") for q in "'\""}
_TRIPLE = {q: re.compile(rf"(?:[^\\{q}]++|\\[\s\S]|{q}(?!{q}{q}))*+") for q in "'\""}
# Inside brackets: strings as units, brackets counted, anything else skipped in one step.
_BRACKET_TOKEN = re.compile(
    r"""'''(?:[^\\']++|\\[\s\S]|'(?!''))*+(?:''')?"""
    r'''|"""(?:[^\\"]++|\\[\s\S]|"(?!""))*+(?:""")?'''
    r"""|'(?:[^\\\n']++|\\.)*+'?|"(?:[^\\\n"]++|\\.)*+"?|[\[\](){}]"""
)
BARE_END = re.compile(r"[\r\n'\"]|;(?=\s)")
_SEPARATOR_BEFORE_KEY = re.compile(r",\s*+$")
_OPENERS = "[({"
_CLOSERS = ")]}"


@dataclass(frozen=True)
class Value:
    """A value's span; for a string, its opening (prefix and quotes) and closing quotes, kept
    when the value is replaced; ``scanned`` is how far reading it went."""

    start: int
    end: int
    scanned: int
    opening: str = ""
    closing: str = ""
    multiline_failed: bool = False  # a multi-line value that did not close within the bound


def find_value(text: str, start: int, multiline: bool = True) -> Value:
    """The value that starts at ``start`` (just after ``name=`` or ``"name": ``).
    ``multiline=False``: a value that would span lines ends with its line instead."""
    prefix = _PREFIX.match(text, start)
    quote_at = prefix.end() if prefix else start
    if quote_at < len(text) and text[quote_at] in "'\"":
        return _string(text, start, quote_at, multiline)
    if start < len(text) and text[start] in _OPENERS:
        return _bracketed(text, start, multiline)
    match = BARE_END.search(text, start)
    end = match.start() if match else len(text)
    if match and text[end] in "'\"":  # the next key of a mapping: its separator is not the value's
        separator = _SEPARATOR_BEFORE_KEY.search(text, start, end)
        if separator:
            return Value(start, separator.start(), end)
    return Value(start, end, end)


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _string(text: str, start: int, quote_at: int, multiline: bool) -> Value:
    quote = text[quote_at]
    triple = text.startswith(quote * 3, quote_at)
    closing = quote * 3 if triple else quote
    body_start = quote_at + len(closing)
    if triple:
        limit = min(len(text), body_start + MAX_MULTILINE) if multiline else _line_end(text, start)
        body = _TRIPLE[quote].match(text, body_start, limit)
    else:
        limit = len(text)
        body = _SINGLE[quote].match(text, body_start)
    assert body is not None  # both patterns match the empty string
    end = body.end()
    opening = text[start:body_start]
    if text.startswith(closing, end):
        return Value(start, end + len(closing), end + len(closing), opening, closing)
    if triple:  # not closed within the bound: the value ends with its line
        return Value(start, max(_line_end(text, start), body_start), limit, opening,
                     multiline_failed=multiline)  # fmt: skip
    return Value(start, end, end, opening)


def _bracketed(text: str, start: int, multiline: bool) -> Value:
    """Up to the bracket that closes the first one (any kind closes any kind: the text need
    not be valid code); unclosed within the bound, up to the end of the line."""
    depth = 0
    limit = min(len(text), start + MAX_MULTILINE) if multiline else _line_end(text, start)
    for token in _BRACKET_TOKEN.finditer(text, start, limit):
        mark = token[0]
        if mark in _OPENERS:
            depth += 1
        elif mark in _CLOSERS:
            depth -= 1
            if depth == 0:
                return Value(start, token.end(), token.end())
    return Value(start, _line_end(text, start), limit, multiline_failed=multiline)
