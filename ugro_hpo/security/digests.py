"""Scrub the driver's secrets inside a trial's process without handing the secrets over.

The trial's settings travel through Ray (and may be kept in its experiment state), so they
carry salted digests of every spelling of every secret (`secret_forms`), never the secrets.
Finding them in a text is then a matter of hashing candidate substrings, which must stay
linear in the text: a keyed rolling hash of each text's windows of `MIN_SECRET_LENGTH`
characters, computed over the whole text at once with numpy, picks the few positions where a
secret may start (the first characters of a secret give one of 2**16 fingerprints, so the
fingerprints reveal 16 bits of those characters and nothing else), and only there are the
digests of the candidate lengths computed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ugro_hpo.security.redaction import MIN_SECRET_LENGTH, REDACTED, known_secrets, redact_text

_WINDOW = MIN_SECRET_LENGTH  # every spelling of a secret is at least this long
_FINGERPRINT_BITS = 16
_MASK64 = (1 << 64) - 1
TAIL = 16 * 1024  # longer than any spelling of a secret (a PEM key, escaped, is about 3 KB)


@dataclass(frozen=True)
class SecretDigests:
    """Salted digests of the secrets the driver knows, so a trial's process can scrub them from
    its error text and output without ever being given them."""

    salt: bytes
    digests: frozenset[bytes]
    lengths: tuple[int, ...]  # longest first
    base: int = 0  # the rolling hash's keys (odd, random)
    mix: int = 0
    # fingerprint of a secret's first characters -> the lengths of the secrets that start so
    starts: tuple[tuple[int, tuple[int, ...]], ...] = ()
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @classmethod
    def of_known(cls) -> SecretDigests:
        return cls.of(known_secrets())

    @classmethod
    def of(cls, values: Iterable[str]) -> SecretDigests:
        """Digests of ``values`` (each at least MIN_SECRET_LENGTH characters long)."""
        salt = secrets.token_bytes(16)
        base, mix = secrets.randbits(64) | 1, secrets.randbits(64) | 1
        chosen = sorted({v for v in values if len(v) >= _WINDOW})
        starts: dict[int, set[int]] = {}
        for value in chosen:
            starts.setdefault(_fingerprint(value[:_WINDOW], base, mix), set()).add(len(value))
        return cls(
            salt=salt,
            digests=frozenset(_digest(salt, v) for v in chosen),
            lengths=tuple(sorted({len(v) for v in chosen}, reverse=True)),
            base=base,
            mix=mix,
            starts=tuple(sorted((k, tuple(sorted(v, reverse=True))) for k, v in starts.items())),
        )

    def __getstate__(self) -> dict[str, Any]:
        return {
            k: getattr(self, k) for k in ("salt", "digests", "lengths", "base", "mix", "starts")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_cache", {})

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced, then the pattern layers applied. The
        whole text is searched, whatever its length (in time linear in it)."""
        if not text:
            return text
        if self.digests and len(text) >= _WINDOW:
            text = self._replace_known(text)
        return redact_text(text)

    def _replace_known(self, text: str) -> str:
        found: list[tuple[int, int]] = []
        lengths_at = self._lengths_at()
        for index, fingerprint in self._candidates(text):
            for length in lengths_at[fingerprint]:  # longest first
                if index + length <= len(text) and (
                    _digest(self.salt, text[index : index + length]) in self.digests
                ):
                    found.append((index, length))
                    break
        if not found:
            return text
        out: list[str] = []
        cursor = 0
        for index, length in found:  # in order of position; an overlapped one is covered
            if index < cursor:
                continue
            out += [text[cursor:index], REDACTED]
            cursor = index + length
        out.append(text[cursor:])
        return "".join(out)

    def _lengths_at(self) -> dict[int, tuple[int, ...]]:
        cached = self._cache.get("lengths_at")
        if cached is None:
            cached = self._cache["lengths_at"] = dict(self.starts)
        return cached

    def _candidates(self, text: str) -> list[tuple[int, int]]:
        """(position, fingerprint) wherever a secret's first characters may stand."""
        import numpy as np

        table = self._cache.get("table")
        if table is None:
            table = np.zeros(1 << _FINGERPRINT_BITS, dtype=bool)
            table[[k for k, _ in self.starts]] = True
            self._cache["table"] = table
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        fingerprints = _fingerprints(codes.astype(np.uint64), self.base, self.mix)
        positions = np.flatnonzero(table[fingerprints])
        return list(zip(positions.tolist(), fingerprints[positions].tolist(), strict=True))


def _fingerprints(codes: Any, base: int, mix: int) -> Any:
    """The fingerprint of every window of _WINDOW code points (numpy's unsigned arithmetic
    wraps around, as `_fingerprint`'s does by masking)."""
    import numpy as np

    count = len(codes) - _WINDOW + 1
    rolling = np.zeros(count, dtype=np.uint64)
    b = np.uint64(base)
    for offset in range(_WINDOW):
        rolling = rolling * b + codes[offset : offset + count] + np.uint64(1)
    return (rolling * np.uint64(mix)) >> np.uint64(64 - _FINGERPRINT_BITS)


def _fingerprint(window: str, base: int, mix: int) -> int:
    rolling = 0
    for char in window:
        rolling = (rolling * base + ord(char) + 1) & _MASK64
    return ((rolling * mix) & _MASK64) >> (64 - _FINGERPRINT_BITS)


def _digest(salt: bytes, value: str) -> bytes:
    return hashlib.blake2b(
        value.encode("utf-8", "surrogatepass"), key=salt, digest_size=16
    ).digest()


def scrub_then_cut(scrub: Callable[[str], str], text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, scrubbed before they are cut, so the cut never
    leaves the first part of a secret behind. Text far beyond ``limit`` is not read: what is
    scrubbed is cut a long way (TAIL, longer than any secret) after the limit, and the
    scrubbed text loses those last characters, where a secret's beginning could stand."""
    window = limit + TAIL
    if len(text) <= window:
        return scrub(text)[:limit]
    scrubbed = scrub(text[:window])
    return scrubbed[: max(0, min(limit, len(scrubbed) - TAIL))]
