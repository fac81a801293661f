"""Ship the objective's own code to a cluster that lacks it.

A custom objective (``objective.fn=mymod:fn``) or the sweeper's Hydra app is often a file next
to the command, importable here only because Python finds it in the working directory or on
``PYTHONPATH``. The nodes of a cluster joined with ``ray.address`` do not have that file, so every
trial would fail to import it. When the module comes from such a folder (a ``sys.path`` entry
that is no installation's: not site-packages, not the standard library), that folder becomes
the runtime environment's ``working_dir``: Ray zips it, the nodes unpack it, and trials run
with it as working directory and first import path, so the same command runs on a laptop and
on a cluster. Excluded: the study's outputs folder, virtual environments (``.venv*``), ``.git``
and byte-code caches. A folder over `SIZE_LIMIT` is refused with one line, before anything is
zipped: the user then chooses what to ship.
"""

from __future__ import annotations

import importlib.util
import json
import os
import site
import sys
import sysconfig
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError

SIZE_LIMIT = 100 * 1024 * 1024  # Ray's own limit is about 500 MiB (its gRPC message size)
FILE_LIMIT = 20_000  # a folder with more files is no objective's code (a home directory)
ALWAYS_EXCLUDED = (".git", ".venv*", "__pycache__", "*.pyc")
JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray for a job's driver
OWN_PACKAGE = "ugro_hpo"  # the cluster runs ugro_hpo itself: it must be installed there
SHIPPED_FROM_VARIABLE = "UGRO_SHIPPED_FROM"
"""Set for the trials to the shipped folder's path on the driver's machine: a trial finds in it
what of the driver's paths (a Hydra app's config folder, its working directory) it has a copy
of, in its own working directory."""


def ship_objective_code(module: str | None, outputs_dir: Path) -> dict[str, Any]:
    """``working_dir`` and ``excludes`` for the folder ``module`` is imported from here, or
    nothing when it is installed (or there is no module to ship)."""
    folder = local_folder(module) if module else None
    if folder is None or _job_ships_code():
        return {}
    excludes = list(ALWAYS_EXCLUDED)
    if outputs_dir.resolve().is_relative_to(folder) and outputs_dir.resolve() != folder:
        excludes.append("/" + outputs_dir.resolve().relative_to(folder).as_posix())
    _check_size(folder, outputs_dir.resolve(), module or "")
    return {"working_dir": str(folder), "excludes": excludes}


def _job_ships_code() -> bool:
    """Whether this driver runs as a Ray job (``ray job submit``, a KubeRay RayJob) whose own
    runtime environment has a working_dir already: that one holds the code, and Ray refuses a
    second."""
    raw = os.environ.get(JOB_CONFIG_VARIABLE)
    if not raw:
        return False
    try:
        return bool((json.loads(raw).get("runtime_env") or {}).get("working_dir"))
    except (ValueError, AttributeError):
        return False


def local_folder(module: str) -> Path | None:
    """The ``sys.path`` folder ``module``'s top-level package or file is found in, when that
    folder is nobody's installation; None for an installed or built-in module."""
    if module == "__main__":  # a Hydra app: `python -m pkg.app` names its module, a script not
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is None or not spec.name or spec.name == "__main__":
            script = getattr(main, "__file__", None)
            return _unless_installed(Path(script).resolve().parent) if script else None
        module = spec.name
    top = module.split(".", 1)[0]
    if top == OWN_PACKAGE:
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package (a namespace package too)
        found = Path(next(iter(spec.submodule_search_locations))).resolve().parent
    elif spec.origin and spec.has_location:
        found = Path(spec.origin).resolve().parent
    else:
        return None
    on_path = {Path(p or os.getcwd()).resolve() for p in sys.path}
    return _unless_installed(found) if found in on_path else None


def _unless_installed(folder: Path) -> Path | None:
    installed = {Path(p).resolve() for p in _installation_folders()}
    if any(folder == root or folder.is_relative_to(root) for root in installed):
        return None
    return folder


def _installation_folders() -> list[str]:
    paths = sysconfig.get_paths()
    folders = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    folders += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    folders.append(site.getusersitepackages())
    return [f for f in folders if f]


def _check_size(folder: Path, outputs_dir: Path, module: str) -> None:
    """Refuse a folder too large to ship, counting no further than the limit."""
    total = files = 0
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = [d for d in dirs if not _excluded(d) and here / d != outputs_dir]
        for name in names:
            if name.endswith(".pyc"):
                continue
            try:
                total += (here / name).lstat().st_size
            except OSError:
                continue
            files += 1
            if total > SIZE_LIMIT or files > FILE_LIMIT:
                what = f"over {SIZE_LIMIT // 2**20} MiB" if total > SIZE_LIMIT else (
                    f"over {FILE_LIMIT} files")  # fmt: skip
                raise ConfigError(
                    f"ray.runtime_env.working_dir: the folder {module!r} is imported from "
                    f"({folder}) holds {what}, too much to ship to the cluster; set "
                    "ray.runtime_env.working_dir (with ray.runtime_env.excludes) or "
                    "ray.runtime_env.py_modules to what the trials need"
                )


def _excluded(name: str) -> bool:
    return name in (".git", "__pycache__") or name.startswith(".venv")


def shipped_copy() -> tuple[Path, Path] | None:
    """In a trial: the folder shipped from the driver (its path there) and its copy here (the
    working directory Ray started the worker in), or None when nothing was shipped."""
    origin = os.environ.get(SHIPPED_FROM_VARIABLE)
    return (Path(origin), Path.cwd()) if origin else None


def in_copy(path: str, origin: Path, copy: Path) -> str:
    """``path`` (of the driver's machine) as the copy has it, when it lies in the shipped
    folder; otherwise unchanged."""
    try:
        inside = Path(os.path.normpath(path)).relative_to(origin)
    except ValueError:
        return path
    return str(copy / inside)
