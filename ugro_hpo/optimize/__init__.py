"""Optuna's side of a study: the protocol trials and storage share, samplers, the study in
persistent storage (create, resume, recover), a stored study read back, and the Ray Tune
searcher that asks and tells the study through Optuna's public API (`optimize.searcher`, not
re-exported: it imports Ray)."""

from ugro_hpo.optimize.samplers import auto_sampler, build_sampler, grid_sampler, sampler_factory
from ugro_hpo.optimize.storage import OpenedStudy, open_storage, open_study
from ugro_hpo.optimize.stored_study import StoredStudy, load_stored_study

__all__ = [
    "OpenedStudy",
    "StoredStudy",
    "auto_sampler",
    "build_sampler",
    "grid_sampler",
    "load_stored_study",
    "open_storage",
    "open_study",
    "sampler_factory",
]
