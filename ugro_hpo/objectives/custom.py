"""A user's own objective: any importable ``function(params, report)``.

``params`` is a plain dict of the trial's parameters; ``report(step, **metrics)`` sends
intermediate metrics; the function returns a dict of final metrics (or, for a study with one
objective, a single number).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.objectives.base import Objective, ReportFn, TrialContext


def import_callable(reference: str, key: str = "objective.fn") -> Callable[..., Any]:
    """Import ``package.module:attribute`` (or ``package.module.attribute``)."""
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigError(f"{key}: give a callable as package.module:function")
    module_name, sep, attribute = reference.partition(":")
    if not sep:
        module_name, _, attribute = reference.rpartition(".")
    if not module_name or not attribute:
        raise ConfigError(f"{key}: {reference!r} is not of the form package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import {module_name!r} ({exc})") from None
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigError(f"{key}: {module_name!r} has no attribute {attribute!r}")
    if not callable(target):
        raise ConfigError(f"{key}: {reference!r} is not callable")
    return target


class CustomObjective(Objective):
    """Calls ``fn(params, report)`` and returns its final metrics."""

    def __init__(self, fn: str) -> None:
        self.reference = fn
        self.function = import_callable(fn)
        self.code_module = fn.partition(":")[0] if ":" in fn else fn.rpartition(".")[0]
        self.name = f"custom({fn})"

    def __call__(
        self, params: dict[str, Any], report: ReportFn, context: TrialContext
    ) -> dict[str, float]:
        result = self.function(dict(params), report)
        if (
            isinstance(result, (int, float))
            and not isinstance(result, bool)
            and len(context.metrics) == 1
        ):
            return {context.metrics[0]: float(result)}
        if not isinstance(result, dict):
            raise TypeError(
                f"{self.reference} must return a dict of final metrics, got {type(result).__name__}"
            )
        return result
