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
