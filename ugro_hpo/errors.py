"""Errors a user can fix: printed as one line, exit code 2, no traceback."""

from __future__ import annotations

PROGRAM = "ugro_hpo"
"""How messages name the program (``ugro_hpo: error: ...``)."""


class UserError(Exception):
    """Bad input: a config value, a search-space file, a name. The message says what to fix."""

    exit_code = 2


class ConfigError(UserError):
    """The composed configuration is invalid."""


class SearchSpaceError(UserError):
    """A search-space file or group option is invalid."""
