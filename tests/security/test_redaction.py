"""Secrets wherever they stand in a text: after a label, quoted or bare, with spaces and commas,
inside URLs of any scheme, as known values from the environment or `.env` (also percent-encoded). Each case plants a fresh value and checks that none of it is left."""

from __future__ import annotations

import io
import json
import re
import secrets
import string
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ugro_hpo.security.digests import SecretDigests
from ugro_hpo.security.redaction import (
    MIN_SECRET_LENGTH,
    REDACTED,
    redact_text,
    register_dotenv,
    register_environment,
)
from ugro_hpo.security.streams import RedactingStream


def _value(kind: str = "plain") -> str:
    token = secrets.token_hex(6)
    return {
        "plain": f"S3cr3t{token}",
        "spaces": f"correct horse {token}, battery staple",
        "url": f"pa/ss+w={token}@x",
    }[kind]


ASSIGNMENTS = [
    ("ValueError: password={v}", "plain"),
    ("error: api_token={v}", "plain"),
    ("RuntimeError: login failed (db_password={v}) for user bob", "plain"),
    ("[ERROR] connect: password={v}", "spaces"),
    ('db_password: "{v}"', "spaces"),
    ("{{'api_key': '{v}', 'lr': 0.1}}", "spaces"),
    ('{{"client_secret": "{v}", "x": 1}}', "plain"),
    ("Authorization: Bearer {v}", "plain"),
    ("HF_TOKEN={v} python train.py", "plain"),
    ("export AWS_SECRET_ACCESS_KEY='{v}'", "spaces"),
    ('a,b,"ValueError: password={v}",c', "spaces"),
]
URLS = [
    "postgresql://user:{v}@db.example:5432/studies",
    "mysql+pymysql://u:{v}@h/db",
    "redis://:{v}@localhost:6379/0",
    "amqp://guest:{v}@broker//vhost",
    "s3+custom.scheme-x://key:{v}@bucket/path",
    "see postgresql://ugro:{v}@db/s for details",
]
QUERIES = [
    "postgresql://db/studies?sslmode=require&password={v}&x=1",
    "https://host/api?api_key={v}",
    "http://h/p?a=1;auth_token={v}",
]


@pytest.mark.parametrize(("template", "kind"), ASSIGNMENTS)
def test_an_assigned_secret_is_redacted_wherever_it_stands(template: str, kind: str) -> None:
    value = _value(kind)
    text = redact_text(template.format(v=value))
    assert value not in text and value.split()[0] not in text and REDACTED in text


@pytest.mark.parametrize("template", URLS)
@pytest.mark.parametrize("kind", ["plain", "url"])
def test_a_url_password_is_redacted_whatever_it_holds(template: str, kind: str) -> None:
    value = _value(kind)
    text = redact_text(template.format(v=value))
    assert value not in text and value[:8] not in text
    assert f":{REDACTED}@" in text


@pytest.mark.parametrize("template", QUERIES)
def test_a_secret_query_value_is_redacted(template: str) -> None:
    value = _value()
    text = redact_text(template.format(v=value))
    assert value not in text and f"={REDACTED}" in text


def test_the_rest_of_a_line_survives_where_it_safely_can() -> None:
    assert redact_text("api_key=abc123xyz; max_tokens=512") == "api_key=***; max_tokens=512"
    assert (
        redact_text("postgresql://u:pw123456@h/db?sslmode=require")
        == "postgresql://u:***@h/db?sslmode=require"
    )
    assert (
        redact_text("lora_r: 8, tokenizer: llama, password: null")
        == "lora_r: 8, tokenizer: llama, password: null"
    )


@pytest.mark.parametrize("source", ["dotenv", "environment"])
def test_a_known_value_is_redacted_anywhere_also_percent_encoded(source: str) -> None:
    value = "v@lue/" + secrets.token_hex(6)
    if source == "dotenv":
        register_dotenv({"SERVICE_URL_PART": value})  # any name: every .env value is a secret
    else:
        register_environment([("SOME_API_TOKEN", value)])
    for text in (
        f"failed near {value} here",
        f"https://h/?q={quote(value, safe='')}",
        f"x{value}x",
    ):
        assert value not in redact_text(text) and quote(value, safe="") not in redact_text(text)


def test_plain_w_and_b_settings_in_dotenv_are_not_secrets() -> None:
    register_dotenv({"WANDB_MODE": "offline", "WANDB_PROJECT": "my-project"})
    assert redact_text("wandb sync outputs/wandb/offline-run-1 (my-project)") == (
        "wandb sync outputs/wandb/offline-run-1 (my-project)"
    )


def test_a_trial_process_scrubs_secrets_it_was_never_given() -> None:
    value = "digest-" + secrets.token_hex(8)
    register_dotenv({"SERVICE_PART": value})
    digests = SecretDigests.of_known()
    assert value not in repr(digests) and value.encode() not in repr(digests.digests).encode()
    assert digests.scrub(f"KeyError: {value!r} (and {value})") == "KeyError: '***' (and ***)"


SECRET_KEYS = [
    "password",
    "api_key",
    "db_passwd",
    "HF_TOKEN",
    "clientSecret",
    "auth_token",
    "PRIVATE_KEY",
]
SEPARATORS = ["=", ": ", " = ", ":"]
LABELS = ["", "ValueError: ", "error: ", "[trial 3] failed; ", "x=1 "]
ALPHABET = string.ascii_letters + string.digits + "/+=@:._-%!$&()[]{} ,"


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(SECRET_KEYS),
    separator=st.sampled_from(SEPARATORS),
    label=st.sampled_from(LABELS),
    value=st.text(ALPHABET, min_size=8, max_size=40).filter(lambda v: v.strip()[:1].isalnum()),
    quoted=st.booleans(),
    tail=st.sampled_from(["", "\nnext line", "'", '"]']),
)
def test_any_assigned_value_is_gone(key: str, separator: str, label: str, value: str,
                                    quoted: bool, tail: str) -> None:  # fmt: skip
    shown = f'"{value}"' if quoted else value
    text = redact_text(f"{label}{key}{separator}{shown}{tail}")
    assert value.strip() not in text
    assert redact_text(text) == text  # redacting twice changes nothing


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.from_regex(r"[a-z][a-z0-9+.\-]{0,10}", fullmatch=True),
    user=st.text(string.ascii_letters + string.digits, max_size=10),
    password=st.text(
        string.ascii_letters + string.digits + "/+=@!$&()*,;%", min_size=6, max_size=30
    ),
    rest=st.sampled_from(["host/db", "host:5432/db?x=1", "[::1]:6379/0", "h"]),
)
def test_any_url_password_is_gone(scheme: str, user: str, password: str, rest: str) -> None:
    assume(
        password not in f"connecting to {scheme}://{user}:" and password not in f"@{rest} failed"
    )
    text = redact_text(f"connecting to {scheme}://{user}:{password}@{rest} failed")
    assert f":{password}@" not in text and password not in text.replace(REDACTED, "")


@pytest.mark.parametrize(
    "url",
    ["postgresql://ugro:{v}@db.example:5432/studies", "postgresql+psycopg://ugro:{v}@db/s",
     "postgresql://ugro@db.example/studies?sslmode=require&password={v}", "mysql://u:{v}@h/db?charset=utf8"],
)  # fmt: skip
def test_a_storage_url_s_password_is_never_printed(compose, tmp_path, url: str) -> None:  # type: ignore[no-untyped-def]
    from ugro_hpo.config.plan import build_plan, describe

    value = _value("url")
    plan = build_plan(compose(f"storage='{url.format(v=value)}'"), tmp_path / "run")
    text = describe(plan)
    assert value not in text and value[:8] not in text and "storage      " in text


# -- every spelling of a known secret -----------------------------------------------------------

PEM = ("-----BEGIN PRIVATE KEY-----\n" + "\n".join("MIIEv" + secrets.token_hex(28) for _ in range(4))
       + "\n-----END PRIVATE KEY-----\n")  # fmt: skip
SPELLINGS = {
    "as it is": lambda v: v,
    "its repr": repr,
    "JSON-escaped": lambda v: json.dumps(v),
    "JSON-escaped, non-ASCII kept": lambda v: json.dumps(v, ensure_ascii=False),
    "percent-encoded, upper case": lambda v: quote(v, safe=""),
    "percent-encoded, lower case": lambda v: re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote(v, safe="")),
    "percent-encoded, '/' kept": quote,
    "+-encoded": lambda v: quote_plus(v, safe=""),
    "+-encoded, lower case": lambda v: re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote_plus(v, safe="")),
    "as bytes": lambda v: repr(v.encode()),
}  # fmt: skip


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize("kind", ["with quotes, spaces and non-ASCII", "a PEM key"])
def test_a_known_secret_is_found_in_every_spelling(spelling: str, kind: str) -> None:
    value = PEM if kind == "a PEM key" else f"p@ss w/rd+é\"x'{secrets.token_hex(4)}"
    register_dotenv({"SOME_VALUE": value})
    shown = SPELLINGS[spelling](value)
    for scrub in (redact_text, SecretDigests.of_known().scrub):
        text = scrub(f"failed: {shown} (retrying)")
        assert text == f"failed: {REDACTED} (retrying)" or REDACTED in text, text
        pieces = [p for p in re.split(r"\W+", value) if len(p) >= 8]
        assert not any(p in text for p in pieces), text


def test_a_pem_key_printed_line_by_line_is_scrubbed_line_by_line() -> None:
    register_dotenv({"SERVICE_KEY": PEM})
    body = PEM.splitlines()[1:-1]
    sink = io.StringIO()
    stream = RedactingStream(sink, SecretDigests.of_known().scrub)
    for line in PEM.splitlines():
        stream.write(line + "\n")  # each line on its own, as a traceback or a log shows it
    assert not any(line in sink.getvalue() for line in body)
    assert sink.getvalue().count(REDACTED) == len(body)


def test_a_secret_shorter_than_the_minimum_is_not_scrubbed_and_that_is_the_documented_rule() -> (
    None
):
    short = "q7" + secrets.token_hex(2)[:3]  # five characters
    register_dotenv({"SHORT": short})
    assert MIN_SECRET_LENGTH == 6 and len(short) == MIN_SECRET_LENGTH - 1
    assert redact_text(f"value {short} here") == f"value {short} here"
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "shorter than 6 characters" in readme


# -- assignments: every literal shape ---------------------------------------------------------

LITERALS = [
    "password=b'{v}'", "password=B\"{v}\"", "password=rb'{v}'", "password=Rb\"{v}\" trailing",
    "password=u'{v}'", "password=f'{v}'", "password=br'{v}'", "password='''{v}'''",
    'password="""{v}\nsecond line"""', "password=['{v}', 'other']", "password=('{v}',)",
    'password=("{v}", "x")', "password={{'{v}'}}", "password=[b'{v}', r'{v}']",
    '{{"password": ["{v}", "x"], "lr": 0.1}}', '{{"api_key": {{"inner": "{v}"}}}}',
    '{{\n  "api_keys": [\n    "{v}",\n    "x"\n  ],\n  "lr": 0.1\n}}', "token: [[\"{v}\"]]",
    "connect(password=('{v}', 'b'), host='h')", "secret = '{v}' ; x = 1", "secret = \"\\\"{v}\\\"\"",
]  # fmt: skip


@pytest.mark.parametrize("template", LITERALS)
def test_an_assigned_literal_of_any_shape_is_gone(template: str) -> None:
    value = "v4lue" + secrets.token_hex(6)
    text = redact_text(template.format(v=value))
    assert value not in text and REDACTED in text, text
    assert redact_text(text) == text


def test_what_follows_a_closed_literal_survives() -> None:
    assert redact_text("password=b'abc123x' lr=0.1") == "password=b'***' lr=0.1"
    assert redact_text("f(password=['a1b2c3'], lr=0.1)") == "f(password=***, lr=0.1)"
    assert (
        redact_text('{"token": ("abc123",), "max_tokens": 512}')
        == '{"token": ***, "max_tokens": 512}'
    )


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(SECRET_KEYS),
    separator=st.sampled_from(SEPARATORS),
    prefix=st.sampled_from(["", "b", "r", "u", "f", "rb", "BR", "Rb"]),
    quote_char=st.sampled_from(["'", '"', "'''", '"""']),
    container=st.sampled_from(["{}", "[{}]", "({},)", "[[{}], 1]", "{{'k': {}}}"]),
    value=st.text(string.ascii_letters + string.digits + "/+=@:._-%!$&()[]{} ,", min_size=8, max_size=30)
    .filter(lambda v: v.strip()[:1].isalnum()),
    tail=st.sampled_from(["", "\nnext line", ", lr=0.1", ")"]),
)  # fmt: skip
def test_any_literal_value_is_gone(key: str, separator: str, prefix: str, quote_char: str,
                                   container: str, value: str, tail: str) -> None:  # fmt: skip
    literal = prefix + quote_char + value + quote_char
    text = redact_text(f"{key}{separator}{container.format(literal)}{tail}")
    assert value.strip() not in text
    assert redact_text(text) == text
