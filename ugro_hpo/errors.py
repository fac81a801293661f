"""Errors a user can fix: printed as one line, exit code 2, no traceback."""

from __future__ import annotations

PROGRAM = "ugro_hpo"
"""How messages name the program (``ugro_hpo: error: ...``)."""


class UserError(Exception):
    """Bad input: a config value, a search-space file, a name. The message says what to fix.

    Given ``key=``, the error is about that config key: the message reads ``key: reason``, and
    ``key`` and ``reason`` stay apart as attributes, so a caller that knows the key by another
    name (the sweeper's ``hydra.sweeper.n_jobs`` for ``parallel_jobs``) can say it in its own
    terms without parsing the text."""

    exit_code = 2

    def __init__(self, reason: str = "", *, key: str | None = None) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)


class ConfigError(UserError):
    """The composed configuration is invalid."""


class SearchSpaceError(UserError):
    """A search-space file or group option is invalid."""
