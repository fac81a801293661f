"""What we rely on in Hydra beyond its documented plugin API, in one place.

- ``hydra.core.singleton.Singleton.get_state()`` / ``set_state(state)``: Hydra's global state
  (its config search path, plugins, job name) as one picklable value. A sweep's trials run as
  Hydra jobs of the app inside Ray workers, processes Hydra never started; the driver takes the
  state here and each worker puts it back before running the job, the way Hydra's own launcher
  plugins (joblib, Ray, submitit) carry it to their workers. Hydra documents neither.

- ``hydra._internal.config_loader_impl.ConfigLoaderImpl`` and
  ``hydra._internal.config_search_path_impl.ConfigSearchPathImpl``: a config loader over a search
  path of our making. On a cluster node the app's config folder is at the path of the copy Ray
  unpacked, not at the driver's; the job's loader is rebuilt with the same search path moved
  there (`moved_config_loader`). Hydra's launchers never need this: they run where the driver's
  files are.

The sweeper tests that run a real sweep through Ray workers (tests/sweeper/) fail when Hydra
changes this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def hydra_state() -> Any:
    """The running app's Hydra state, for the trials' workers."""
    from hydra.core.singleton import Singleton

    return Singleton.get_state()


def enter_hydra_state(state: Any) -> None:
    """In a trial's worker: Hydra's globals (its resolvers) and the driver's state put back."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    setup_globals()
    Singleton.set_state(state)


def moved_config_loader(hydra_context: Any, move: Callable[[str], str]) -> Any:
    """``hydra_context`` with a config loader whose folders on the search path (``file://`` or
    a bare path) are ``move(path)``; the other entries (``pkg://``, ``structured://``) as
    they were."""
    import dataclasses

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl

    search_path = ConfigSearchPathImpl()
    for element in hydra_context.config_loader.get_search_path().get_path():
        path = element.path
        if path.startswith("file://"):
            path = "file://" + move(path[len("file://") :])
        elif "://" not in path:  # a folder given as a path (the app's config_path)
            path = move(path)
        search_path.append(element.provider, path)
    return dataclasses.replace(
        hydra_context, config_loader=ConfigLoaderImpl(config_search_path=search_path)
    )
