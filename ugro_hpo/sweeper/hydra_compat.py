"""What we rely on in Hydra beyond its documented plugin API, in one place.

- ``hydra.core.singleton.Singleton.get_state()`` / ``set_state(state)``: Hydra's global state
  (its config search path, plugins, job name) as one picklable value. A sweep's trials run as
  Hydra jobs of the app inside Ray workers, processes Hydra never started; the driver takes the
  state here and each worker puts it back before running the job, the way Hydra's own launcher
  plugins (joblib, Ray, submitit) carry it to their workers. Hydra documents neither.

The sweeper tests that run a real sweep through Ray workers (tests/sweeper/) fail when Hydra
changes this.
"""

from __future__ import annotations

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
