"""What every entry point does before it reads anything else: the command line (`ugro_hpo.cli`)
and the Hydra sweeper pass the same boundary.

- secrets are registered first, so they are scrubbed from everything printed or written: every
  value of a git-ignored `.env` in the working directory (loaded into the environment, which
  wins), every secret-named environment variable, the password of every URL given;
- credentials given as overrides are refused (`credentials.check_overrides`), in every
  spelling, before anything is composed or written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path


def load_secrets() -> None:
    """Read a git-ignored `.env` in the working directory (the environment wins), and note every
    value in it and every secret-looking variable, so they are scrubbed from all output."""
    from dotenv import dotenv_values, load_dotenv

    from ugro_hpo.security.redaction import register_dotenv, register_environment

    dotenv = Path.cwd() / ".env"
    if dotenv.is_file():
        register_dotenv(dotenv_values(dotenv))
        load_dotenv(dotenv, override=False)
    register_environment()


def start(arguments: Iterable[str]) -> None:
    """Register the secrets, then refuse a credential among ``arguments`` (overrides)."""
    from ugro_hpo.security.credentials import check_overrides

    arguments = list(arguments)
    load_secrets()
    register_url_passwords(arguments)
    check_overrides(arguments)


def register_url_passwords(texts: Iterable[object]) -> None:
    """The password of every URL in ``texts`` (``postgresql://user:pw@host/db``) is a secret:
    scrubbed wherever it appears later, even away from its URL (a database error quoting it)."""
    from urllib.parse import unquote

    from ugro_hpo.security.redaction import register

    for text in texts:
        if not isinstance(text, str):
            continue
        for match in _URL.finditer(text):
            rest = match["rest"]
            head = re.split(r"[?#]", rest, maxsplit=1)[0]
            at = head.rfind("@")
            if at < 0:
                continue
            _, colon, password = rest[:at].partition(":")
            if colon and password:
                register(password, unquote(password))


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://(?P<rest>[^\s'\"<>`]+)")
