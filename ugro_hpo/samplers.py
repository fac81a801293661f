"""Sampler factories for the `search` group options that need the search space itself."""

from __future__ import annotations

from typing import Any

import optuna

from ugro_hpo.search_space import SearchSpace


class _StudyGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, made to end the study through Ray Tune.

    Optuna's own version calls ``study.stop()`` when the grid is exhausted, which only works
    inside ``study.optimize``; here Ray Tune drives the study, so the searcher asks
    `is_exhausted` instead.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None

    def is_exhausted(self, study: optuna.Study) -> bool:
        return not self._get_unvisited_grid_ids(study)


def grid_sampler(search_space: SearchSpace, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Every combination of the space's values (floats need a `step`)."""
    return _StudyGridSampler(search_space.grid(), seed=seed)


AUTO_GP_MAX_PARAMETERS = 10


def auto_sampler(
    search_space: SearchSpace, seed: int | None = None, n_startup_trials: int = 10
) -> optuna.samplers.BaseSampler:
    """GPSampler for small spaces of numeric, unconditional, unconstrained parameters (where a
    Gaussian process is the most sample-efficient model, and Optuna 5's GP treats running
    trials as a batch, so parallel trials spread out); multivariate TPE with constant liar for
    the rest. Constraints go to TPE because an infeasible trial is stored as pruned without a
    value: TPE learns to avoid the region from it, a GP ignores it."""
    numeric = all(p.type in ("int", "float") for p in search_space.parameters)
    small = len(search_space.parameters) <= AUTO_GP_MAX_PARAMETERS
    plain = not search_space.is_conditional and not search_space.constraints
    if numeric and small and plain:
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        multivariate=True,
        group=search_space.is_conditional,
        constant_liar=True,
    )
