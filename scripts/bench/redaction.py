"""How fast secrets are scrubbed from text: the stream a trial prints through, the driver's
scrubber, and each layer on 1 MB of text made to be slow for it.

Stream throughput: 20,000 lines of training output (about 90 characters each, a few of them
carrying a URL or an assignment) written line by line, as ``print`` does, through

- ``RedactingStream(target, digests.scrub)``: a trial's stdout (secrets known by digest);
- ``RedactingStream(target)``: the driver's stdout (secrets known by value);

with ten secrets registered. Adversarial inputs: for each layer, text repeated to 1 MB that
costs a naive scrubber the square of its length (``password=*** `` over and over, an opened
quote that never closes, URLs without an ``@``, one unbroken word, a known secret's first
characters again and again). Each is timed once, on the monotonic clock, and must take under
5 s (a quadratic scrubber takes minutes).

    .venv/bin/python scripts/bench/redaction.py            # figures on stdout and in
                                                           # outputs/bench/redaction.json
"""

from __future__ import annotations

import io
import json
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ugro_hpo.security import redaction  # noqa: E402
from ugro_hpo.security.digests import SecretDigests  # noqa: E402
from ugro_hpo.security.streams import RedactingStream  # noqa: E402

LINES = 20_000
ADVERSARIAL_BYTES = 1_000_000
LIMIT_S = 5.0


def _lines() -> list[str]:
    out = []
    for i in range(LINES):
        if i % 50 == 0:
            out.append(f"[worker] connecting to postgresql://ugro@db.example:5432/studies?x={i}\n")
        elif i % 77 == 0:
            out.append(f"retrying request {i}: api_key=None, timeout=30\n")
        else:
            out.append(f"step {i:6d}/20000  loss 2.{i % 997:03d}  lr 1.0e-04  tokens/s 1234.5  "
                       f"grad_norm 0.{i % 89:02d}\n")  # fmt: skip
    return out


def _stream_rate(redact: object, lines: list[str]) -> float:
    """Lines per second through a redacting stream (print: text, then its newline)."""
    sink = io.StringIO()
    stream = RedactingStream(sink, redact)
    started = time.perf_counter()
    for line in lines:
        stream.write(line[:-1])
        stream.write("\n")
    stream.flush()
    elapsed = time.perf_counter() - started
    assert sink.getvalue().count("\n") == len(lines)
    return len(lines) / elapsed


def _adversarial(secret: str, size: int) -> dict[str, str]:
    def fill(unit: str) -> str:
        return unit * (size // len(unit))

    return {
        "assignment: 'password=*** ' repeated": fill("password=*** "),
        "assignment: opened quote never closed": fill("password='*** "),
        "assignment: a key with no value": fill("api_key="),
        "assignment: unclosed brackets, line after line": fill("password=[\n"),
        "assignment: unclosed triple quotes, line after line": fill("token='''\n"),
        "assignment: brackets nested 1 MB deep": "password=" + fill("["),
        "assignment: one secret name 1 MB long": fill("password") + "=x",
        "assignment: keys and plain values": fill("a=1 "),
        "url: schemes without '@'": fill("s://u:p/"),
        "url: one long user part": "x://" + fill("u:") + "@h",
        "url: '@' and '?' again and again": "x://" + fill("u:p@h?a=1&"),
        "known value: its first characters repeated": fill(secret[:-1]),
        "one unbroken word": fill("a"),
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bytes", type=int, default=ADVERSARIAL_BYTES,
                        help="size of each adversarial text (default 1 MB)")  # fmt: skip
    size = parser.parse_args().bytes
    known = ["S3cr3t-" + secrets.token_hex(10) for _ in range(10)]
    redaction.register(*known)
    lines = _lines()
    digests = SecretDigests.of_known()
    rows: dict[str, float] = {
        "trial stream (digests), lines/s": _stream_rate(digests.scrub, lines),
        "driver stream (values), lines/s": _stream_rate(None, lines),
    }
    print(f"{LINES} lines of ~90 characters, {len(known)} secrets registered")
    for name, value in rows.items():
        print(f"  {name:<40} {value:12,.0f}")
    timings: dict[str, dict[str, float]] = {}
    failed = False
    for name, text in _adversarial(known[0], size).items():
        timings[name] = {}
        for layer, scrub in (("redact_text", redaction.redact_text), ("digests", digests.scrub)):
            started = time.perf_counter()
            scrub(text)
            elapsed = time.perf_counter() - started
            timings[name][layer] = round(elapsed, 3)
            failed |= elapsed > LIMIT_S
        print(f"  {size / 1e6:g} MB {name:<44} redact_text {timings[name]['redact_text']:6.3f} s, "
              f"digests {timings[name]['digests']:6.3f} s")  # fmt: skip
    out = ROOT / "outputs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "redaction.json").write_text(
        json.dumps({"stream": rows, "adversarial_1mb_s": timings}, indent=2) + "\n"
    )
    verdict = "FAIL" if failed else "ok"
    print(f"redaction: {verdict} (every 1 MB adversarial text under {LIMIT_S:g} s: {not failed})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
