"""Run `python -m ugro_hpo ARGS` with a timestamp at each phase of a study (for fixed_cost.py).

    .venv/bin/python scripts/bench/phase_trace.py MARKS_FILE [overrides...]

Functions of the pipeline are wrapped as their modules are first imported, so nothing is
imported earlier than in a plain run; each mark is a line "<time.time()> <what>" in MARKS_FILE. The wrapping costs microseconds; the first trial's result and the last are marked
from the searcher, where the driver hears of them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import time
from collections.abc import Callable
from typing import Any

_marks = open(sys.argv[1], "w", buffering=1)  # noqa: SIM115  (open until the process ends)


def mark(what: str) -> None:
    _marks.write(f"{time.time():.3f} {what}\n")


def timed(owner: Any, name: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"> {name}")
        try:
            return original(*args, **kwargs)
        finally:
            mark(f"< {name}")

    setattr(owner, name, wrapper)


def searcher(module: Any) -> None:
    cls = module.StudySearcher
    on_result, on_complete = cls.on_trial_result, cls.on_trial_complete
    seen: set[str] = set()

    def first_result(self: Any, trial_id: str, result: dict[str, Any]) -> None:
        if not seen:
            mark("first trial result")
        seen.add(trial_id)
        on_result(self, trial_id, result)

    def completed(self: Any, trial_id: str, *args: Any, **kwargs: Any) -> None:
        on_complete(self, trial_id, *args, **kwargs)
        mark("trial complete")

    cls.on_trial_result, cls.on_trial_complete = first_result, completed


PATCHES: dict[str, Callable[[Any], None]] = {
    "ugro_hpo.pipeline": lambda m: [timed(m, n) for n in ("build_plan", "finish")],
    "ugro_hpo.execution.launcher": lambda m: [timed(m, n) for n in ("start_ray", "run_trials")],
    "ugro_hpo.optimize.storage": lambda m: timed(m, "open_study"),
    "ray.tune.tuner": lambda m: timed(m.Tuner, "fit"),
    "ugro_hpo.optimize.searcher": searcher,
}


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Applies PATCHES to a module right after it is first executed."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def main() -> None:
    sys.meta_path.insert(0, PatchOnImport())
    mark("python started")
    from ugro_hpo.cli import app

    sys.argv = ["ugro_hpo", *sys.argv[2:]]
    try:
        app.main()
    finally:
        mark("main returned")


if __name__ == "__main__":
    main()
