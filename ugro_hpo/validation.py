"""One rule each for the values every part of a study shares: whole numbers (from the config, an
objective's options, a stored study), metric values and names, and objectives' directions.

One rule, not one per caller, so a name the search space accepts is one a trial may report, a
count the config accepts is one the stored study reads back, and the errors read alike. Each
check raises a one-line `ConfigError` naming the key; the callers that judge a trial's own
reports (`execution.trainable`) turn a broken rule into that trial's failure instead.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, TypeGuard

from ugro_hpo.errors import ConfigError

STORED_CEILING = 10**7
"""The largest count a stored study may hold (a larger one is taken for an altered database)."""

METRIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-. /]{0,249}")
"""A metric's name: MLflow's rule (which W&B accepts too), ASCII only, at most 250 characters.
What a trial reports goes to the study, the trackers and Ray under this name."""

DIRECTIONS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}
"""The words for an objective's direction, and what each means."""
GOALS = ("minimize", "maximize")
"""The directions as Optuna names them (the only words the Hydra sweeper's settings take)."""


def whole_number(
    value: Any,
    key: str,
    minimum: int,
    maximum: int | None = None,
    *,
    integral_floats: bool = False,
    hint: str = "",
) -> int:
    """``value`` as a whole number in range, or a one-line ConfigError naming ``key``.

    A bool is no number; a NumPy integer is one. With ``integral_floats``, 8.0 counts as 8 (a
    sampler or a YAML file may give a whole number as a float). ``hint`` follows the rule in
    the message (" or null")."""
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if integral_floats and isinstance(value, float) and value.is_integer():
        whole = True
    number = int(value) if whole else None
    if number is None or number < minimum:
        raise ConfigError(f"must be a whole number >= {minimum}{hint}, got {value!r}", key=key)
    if maximum is not None and number > maximum:
        raise ConfigError(f"must be a whole number <= {maximum}, got {value!r}", key=key)
    return number


def stored_whole_number(value: Any, where: str, key: str, minimum: int) -> int:
    """A count read back from a study database, which others may write to: a whole number
    between ``minimum`` and `STORED_CEILING`, else a one-line ConfigError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not minimum <= value <= STORED_CEILING
    ):
        raise ConfigError(
            f"{where}: stored {key} {str(value)[:40]!r} is not a whole number between "
            f"{minimum} and {STORED_CEILING:,}; the study database may have been altered"
        )
    return value


def is_number(value: Any) -> bool:
    """A real number (a NumPy scalar too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else None."""
    if not is_number(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def is_metric_name(name: Any) -> TypeGuard[str]:
    """Does ``name`` follow `METRIC_NAME`?"""
    return isinstance(name, str) and METRIC_NAME.fullmatch(name) is not None


def direction(value: Any) -> str | None:
    """``minimize`` or ``maximize`` for any of the words in `DIRECTIONS` (any case), else None."""
    return DIRECTIONS.get(str(value).lower())
