"""Optuna's side of a study: the protocol trials and storage share, samplers, the study in
persistent storage (create, resume, recover), a stored study read back, and the Ray Tune
searcher that asks and tells the study through Optuna's public API.

Only the protocol is imported here: every other module imports Optuna, which a trial's worker
does without (it would add about 0.2 s to its first trial). Import those from their modules
(`optimize.samplers.build_sampler`, `optimize.storage.open_study`, ...)."""

from ugro_hpo.optimize import protocol

__all__ = ["protocol"]
