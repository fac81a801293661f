"""Optuna samplers for the `search` group: building them once, and the two that need the
search space itself (`search=auto`, `search=grid`)."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from ugro_hpo.errors import ConfigError
from ugro_hpo.optimize.optuna_compat import FeasibilityAwareGP, grid_point_first
from ugro_hpo.space import SearchSpace
from ugro_hpo.study_plan import Plan

AUTO_GP_MAX_PARAMETERS = 10
AUTO_GP_MAX_TRIALS = 100
"""Trials after which `search=auto` hands a Gaussian process's study to TPE. A GP's cost grows
with the cube of the trials it models: measured on two CPU cores, an ask takes about 0.14 s at
100 trials, 0.25 s at 200 and 0.4 s at 300 (more with trials running in parallel), while by
100 trials a small numeric space is well explored and TPE asks in milliseconds."""


@dataclass(frozen=True)
class SamplerFactory:
    """The configured sampler, checked but not built: it is built once, when the study is open
    and the seed is known. A target configured with ``_partial_: true`` is a function of the
    search space (`auto_sampler`, `grid_sampler`)."""

    key: str
    target: str
    partial: functools.partial[Any]
    needs_space: bool

    def check(self, space: SearchSpace) -> None:
        """What can be checked without building (a grid search needs a finite grid)."""
        getattr(self.partial.func, "check", lambda space: None)(space)

    def name(self, space: SearchSpace) -> str:
        """The Optuna class it builds (or, for `auto`, starts with)."""
        return sampler_name(self.partial.func, space)

    def build(self, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
        import warnings

        # Options such as TPE's `group` are marked experimental; choosing them is deliberate.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        try:
            made = self.partial(space, seed=seed) if self.needs_space else self.partial(seed=seed)
        except ConfigError:
            raise
        except Exception as exc:  # a sampler's constructor may raise anything
            raise ConfigError(
                f"cannot build {self.target!r} ({type(exc).__name__}: {exc})", key=self.key
            ) from None
        if not isinstance(made, optuna.samplers.BaseSampler):
            raise ConfigError(f"{self.target!r} did not give an Optuna sampler", key=self.key)
        return made


def sampler_factory(spec: Mapping[str, Any], key: str = "search") -> SamplerFactory:
    """The `search` option as a `SamplerFactory`; its target and settings are checked here."""
    from ugro_hpo.components import instantiate

    partial = instantiate({**spec, "_partial_": True}, key)
    try:
        inspect.signature(partial.func).bind_partial(*partial.args, **partial.keywords)
    except TypeError as exc:
        raise ConfigError(
            f"{spec['_target_']!r} does not take these settings ({exc})", key=key
        ) from None
    return SamplerFactory(key, str(spec["_target_"]), partial, bool(spec.get("_partial_")))


def sampler_name(target: Any, space: SearchSpace) -> str:
    """The Optuna class a configured sampler is (or, for `auto`, starts as), by public name."""
    chosen = getattr(target, "chooses", None)
    cls = chosen(space) if chosen is not None else target
    for base in getattr(cls, "__mro__", ()):
        if base.__module__.startswith("optuna.samplers"):
            return f"optuna.samplers.{base.__name__}"
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__name__', cls)}"


class StudyGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, ending the study through Ray Tune rather than `study.stop()`
    (which only works inside ``study.optimize``): the searcher stops asking once every one of
    the ``grid_size`` points has been proposed.

    The point of the space's defaults (``first``) comes first, as every other search starts
    from the defaults: it is put first in the grid's own order (`optuna_compat.grid_point_first`)
    rather than queued as a trial, which the grid does not count as its point (it would run
    twice)."""

    def __init__(
        self,
        grid: dict[str, list[Any]],
        seed: int | None = None,
        first: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(grid, seed=seed)
        self.grid_size = math.prod(len(values) for values in grid.values())
        if first:
            grid_point_first(self, {k: v for k, v in first.items() if k in grid})

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def grid_sampler(search_space: SearchSpace, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Every combination of the space's values (floats need a `step`)."""
    return StudyGridSampler(search_space.grid(), seed=seed, first=search_space.defaults())


grid_sampler.chooses = lambda space: optuna.samplers.GridSampler  # type: ignore[attr-defined]
grid_sampler.check = lambda space: space.grid()  # type: ignore[attr-defined]  # a finite grid


def _gp_fits(space: SearchSpace) -> bool:
    """A Gaussian process suits small spaces of numeric parameters without conditions (it
    models constraints too: `FeasibilityAwareGP`)."""
    numeric = all(p.type in ("int", "float") for p in space.parameters)
    return numeric and len(space.parameters) <= AUTO_GP_MAX_PARAMETERS and not space.is_conditional


def _tpe(space: SearchSpace, seed: int | None, n_startup_trials: int) -> optuna.samplers.TPESampler:
    import warnings

    # TPE's `group` (conditional spaces) is marked experimental; choosing it is deliberate.
    warnings.filterwarnings("ignore", "Argument ``group``", optuna.exceptions.ExperimentalWarning)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        multivariate=True,
        group=space.is_conditional,
        constant_liar=True,
    )


class AutoSampler(optuna.samplers.BaseSampler):
    """Optuna's GPSampler while a Gaussian process is both the most sample-efficient model and
    cheap (up to `AUTO_GP_MAX_TRIALS` finished trials of a small numeric space), multivariate
    TPE with constant liar after that and for every other space. Both treat running trials as
    pending, so parallel trials spread out. The switch happens once, and is reported."""

    def __init__(self, space: SearchSpace, seed: int | None, n_startup_trials: int,
                 gp_max_trials: int = AUTO_GP_MAX_TRIALS) -> None:  # fmt: skip
        self.gp_max_trials = gp_max_trials
        self._tpe = _tpe(space, None if seed is None else seed + 1, n_startup_trials)
        self._gp = (
            FeasibilityAwareGP(seed=seed, n_startup_trials=n_startup_trials)
            if _gp_fits(space)
            else None
        )
        self.switched_at: int | None = None

    def current(self, study: optuna.Study) -> optuna.samplers.BaseSampler:
        """The sampler in use: the GP until enough trials have finished, then TPE."""
        if self._gp is None:
            return self._tpe
        if self.switched_at is None:
            finished = len(
                study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            )
            if finished < self.gp_max_trials:
                return self._gp
            self.switched_at = finished
            import logging

            logging.getLogger("ugro_hpo").info(
                "search=auto: %d trials finished; TPE takes over from the Gaussian process, whose "
                "cost grows with the cube of the trials",
                finished,
            )
        return self._tpe

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.current(study).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.current(study).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:  # fmt: skip
        return self.current(study).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.current(study).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:  # fmt: skip
        self.current(study).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()
        if self._gp is not None:
            self._gp.reseed_rng()


def auto_sampler(search_space: SearchSpace, seed: int | None,
                 n_startup_trials: int) -> optuna.samplers.BaseSampler:  # fmt: skip
    """`search=auto`: a GP for small numeric spaces (handing over to TPE as the study grows),
    multivariate TPE for the rest (see `AutoSampler`). Its settings' defaults are those of
    conf/search/auto.yaml."""
    return AutoSampler(search_space, seed=seed, n_startup_trials=n_startup_trials)


auto_sampler.chooses = lambda space: (  # type: ignore[attr-defined]
    optuna.samplers.GPSampler if _gp_fits(space) else optuna.samplers.TPESampler
)


def auto_reason(space: SearchSpace) -> str:
    """Why `search=auto` chose what it chose, for the plan and the summary."""
    if _gp_fits(space):
        return (
            f"a Gaussian process for this small numeric space, handing over to TPE after "
            f"{AUTO_GP_MAX_TRIALS} finished trials to keep every ask fast"
        )
    why = (
        "conditional parameters"
        if space.is_conditional
        else (
            "categorical parameters"
            if any(p.type == "categorical" for p in space.parameters)
            else f"more than {AUTO_GP_MAX_PARAMETERS} parameters"
        )
    )
    return f"multivariate TPE with constant liar ({why})"


def build_sampler(plan: Plan, seed_offset: int = 0) -> Any:
    """The plan's sampler, built once; ``seed_offset`` keeps a resumed study from replaying
    its seed."""
    factory = sampler_factory(plan.sampler)  # plain data in, checked again: cheap
    return factory.build(plan.search_space, seed=(plan.seed + seed_offset) % 2**32)
