"""Where API keys come from: the environment, a git-ignored `.env` (loaded at start, the
environment wins), a key file, or the tool's own login (`wandb login`). Never from a config
file or an override. A key is checked for shape, and a message shows at most its last four
characters.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from ugro_hpo.errors import ConfigError
from ugro_hpo.security.redaction import mask, register

log = logging.getLogger(__name__)
KEY_FORMAT = re.compile(r"[A-Za-z0-9_\-]{20,}")


def check_key_format(key: str, name: str) -> str:
    """At least 20 letters and digits (self-hosted and newer keys also carry '-' and '_')."""
    if not KEY_FORMAT.fullmatch(key):
        raise ConfigError(
            f"{name} looks malformed ({mask(key)}): expected at least 20 letters, digits, '-' or '_'"
        )
    return key


def read_key_file(path: str | Path, name: str) -> str:
    """A key kept in a file; a file that others can read gets a warning."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{name}: key file {file} not found")
    mode = file.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "key file %s is readable by other users; restrict it with: chmod 600 %s", file, file
        )
    key = file.read_text(encoding="utf-8").strip()
    register(key)
    return key


def wandb_api_key(key_file: str | None = None) -> str | None:
    """WANDB_API_KEY, else the key file (wandb.api_key_file / WANDB_API_KEY_FILE), checked.

    A key read from a file is put in this process's environment for wandb to use.
    """
    key = os.environ.get("WANDB_API_KEY")
    file = key_file or os.environ.get("WANDB_API_KEY_FILE")
    if not key and file:
        key = read_key_file(file, "wandb.api_key_file")
        os.environ["WANDB_API_KEY"] = key
    if key:
        register(key)
        check_key_format(key, "WANDB_API_KEY")
    return key or None
