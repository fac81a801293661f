"""Optuna's side of a study: the protocol trials and storage share, samplers, the study in
persistent storage (create, resume, recover), a stored study read back, and the Ray Tune
searcher that asks and tells the study through Optuna's public API."""

from ugro_hpo.lazy import lazy_exports

_EXPORTS = {
    "OpenedStudy": "storage",
    "open_storage": "storage",
    "open_study": "storage",
    "StudySearcher": "searcher",
    "build_sampler": "samplers",
    "auto_sampler": "samplers",
    "grid_sampler": "samplers",
    "StoredStudy": "stored_study",
    "load_stored_study": "stored_study",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
