"""A sampler that learns from what an early-stopping scheduler learns (`search=multi_fidelity`).

Under ASHA (or Hyperband, or the median rule) most trials stop after a few steps and the best
ones are still running. Optuna's samplers read such a study poorly: the GP models finished
trials only, so it samples at random until ten trials have run to the end; TPE counts every
running trial as bad (its constant liar), the promoted ones too, which are the best so far.

At each ask this sampler looks at the study at one step, the *rung*: the highest step that at
least ``min_observations`` trials have reached (as BOHB fits its model at the highest budget
with enough observations). In that view a trial that reached the rung, running or not, counts
with its value there; a trial stopped before it counts as stopped at its last step (TPE ranks
those below every trial that went further, then by value); a trial with nothing reported yet
is running (the liar keeps parallel proposals apart); an infeasible one keeps its constraints.
Optuna's multivariate TPE proposes from that view. Nothing waits for a rung to fill: each ask
uses what has arrived, so the start-up is as short as the first rung makes it (random until
``min_observations`` trials have reported one step). A study whose trials report nothing before
they end reads as itself, and a study with several objectives goes to TPE unchanged.

The view is a throw-away in-memory study built with Optuna's public API (`create_trial`,
`add_trials`); each ask reads the study once and costs time linear in its trials.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, GPSampler, RandomSampler, TPESampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

GP_MAX_OBSERVATIONS = 60
"""Values ``model=gp`` fits its Gaussian process on at most (the rung's, then stopped trials'
stand-ins): its cost grows with their cube."""
FINAL = math.inf
"""The rung of a value a trial gave only at its end (it reported no intermediate values)."""
_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


@dataclass(frozen=True)
class RungView:
    """The study seen at one rung, and the asking trial's stand-in there."""

    rung: float
    study: Study
    trial: FrozenTrial
    observed: int  # trials with a value at the rung
    model: BaseSampler  # what proposes from the view


def _infeasible(trial: FrozenTrial) -> bool:
    return any(v > 0 for v in (getattr(trial, "constraints", None) or {}).values())


def _curve(trial: FrozenTrial) -> dict[float, float]:
    """The values a trial gave, by step (a value given only at the end is at `FINAL`)."""
    curve: dict[float, float] = {
        float(s): v for s, v in trial.intermediate_values.items() if not math.isnan(v)
    }
    if trial.state == TrialState.COMPLETE and not curve and trial.value is not None:
        curve[FINAL] = float(trial.value)
    return curve


def choose_rung(curves: Sequence[dict[float, float]], min_observations: int) -> float | None:
    """The highest step at which at least ``min_observations`` of ``curves`` have a value."""
    counts = Counter(step for curve in curves for step in curve)
    enough = [step for step, n in counts.items() if n >= min_observations]
    return max(enough) if enough else None


class MultiFidelitySampler(BaseSampler):
    """A model fitted on the study as seen at its highest well-observed rung (see the module).

    Args:
        seed: seed of the random start-up and of the model.
        min_observations: trials a step needs before it can be the rung; ``None``: one more
            than the number of parameters (BOHB's rule), and at least 5.
        model: ``tpe``: Optuna's multivariate TPE, which ranks the stopped trials by how far
            they got; ``gp``: Optuna's Gaussian process on the rung's values, stopped trials
            standing in with the rung's worst value (at most `GP_MAX_OBSERVATIONS` values in
            all; numeric spaces only): more sample-efficient, but an ask takes about a second
            on two cores.
        group: let TPE model each sub-space of a conditional space on its own.
    """

    def __init__(self, seed: int | None, min_observations: int | None,
                 model: str = "tpe", group: bool = False,
                 impute_stopped: bool = True) -> None:  # fmt: skip
        if model not in ("gp", "tpe"):
            raise ValueError(f"model must be tpe or gp, not {model!r}")
        with warnings.catch_warnings():  # `group` is marked experimental; choosing it is deliberate
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._tpe = TPESampler(seed=seed, n_startup_trials=0, multivariate=True, group=group,
                                   constant_liar=True)  # fmt: skip
            # Several objectives: Optuna's TPE as `search=tpe` has it.
            self._plain = TPESampler(seed=None if seed is None else seed + 1, multivariate=True,
                                     group=group, constant_liar=True)  # fmt: skip
        self._gp = GPSampler(seed=seed, n_startup_trials=0)
        self._random = RandomSampler(seed=seed)
        self.model = model
        self.impute_stopped = impute_stopped
        self.min_observations = min_observations
        self._views: dict[int, RungView | None] = {}
        self.last_view: RungView | None = None  # what the latest proposal was fitted on

    # -- the view ---------------------------------------------------------------------------

    def view(self, study: Study, trial: FrozenTrial) -> RungView | None:
        """The study at its rung for ``trial``'s proposal, or None while no step has enough
        observations (built once per trial, on its first use)."""
        if trial.number not in self._views:
            self._views[trial.number] = self._build_view(study, trial)
        return self._views[trial.number]

    def _build_view(self, study: Study, trial: FrozenTrial) -> RungView | None:
        others = [t for t in study.get_trials(deepcopy=False, states=_STATES)
                  if t.number != trial.number]  # fmt: skip
        curves = [{} if _infeasible(t) else _curve(t) for t in others]
        needed = self.min_observations
        if needed is None:
            needed = max(5, len({name for t in others for name in t.distributions}) + 1)
        rung = choose_rung(curves, needed)
        if rung is None:
            return None
        at_rung = [curve[rung] for curve in curves if rung in curve]
        gp = self.model == "gp"
        # A GP models values only: a trial stopped below the rung gets the rung's worst value
        # (it was stopped for being worse), those that got furthest first, up to
        # GP_MAX_OBSERVATIONS values in all (a GP's cost grows with their cube); the others
        # are left out. TPE ranks every stopped trial by how far it got.
        worst = max(at_rung) if study.direction == StudyDirection.MINIMIZE else min(at_rung)
        stopped = sorted(
            (i for i, (t, c) in enumerate(zip(others, curves, strict=True))
             if c and rung not in c and t.state != TrialState.RUNNING),
            key=lambda i: (-max(curves[i]), -others[i].number),
        )  # fmt: skip
        as_worst = set(stopped[: max(0, GP_MAX_OBSERVATIONS - len(at_rung))])
        # Every stand-in names the same constraints (a GP needs that); one without is feasible.
        names = sorted({n for t in others for n in (getattr(t, "constraints", None) or {})})
        stand_ins = [
            _stand_in(t, curve, rung, worst, gp=gp, as_worst=i in as_worst and self.impute_stopped,
                      constraints={n: (t.constraints or {}).get(n, 0.0) for n in names} or None)
            for i, (t, curve) in enumerate(zip(others, curves, strict=True))
        ]  # fmt: skip
        stand_ins.append(create_trial(state=TrialState.RUNNING, params=trial.params,
                                      distributions=trial.distributions))  # fmt: skip
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
        try:
            seen = optuna.create_study(directions=study.directions, sampler=self._random)
        finally:
            optuna.logging.set_verbosity(verbosity)
        seen.add_trials(stand_ins)
        return RungView(rung=rung, study=seen, trial=seen.get_trials(deepcopy=False)[-1],
                        observed=len(at_rung), model=self._gp if gp else self._tpe)  # fmt: skip

    # -- BaseSampler ------------------------------------------------------------------------

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if len(study.directions) > 1:
            return self._plain.infer_relative_search_space(study, trial)
        seen = self.view(study, trial)
        self.last_view = seen
        if seen is None:
            return {}
        return seen.model.infer_relative_search_space(seen.study, seen.trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        if len(study.directions) > 1:
            return self._plain.sample_relative(study, trial, search_space)
        seen = self.view(study, trial)
        if seen is None:
            return {}
        return seen.model.sample_relative(seen.study, seen.trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:  # fmt: skip
        if len(study.directions) > 1:
            return self._plain.sample_independent(study, trial, param_name, param_distribution)
        seen = self.view(study, trial)
        if seen is None:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        # A parameter outside the modelled space (a conditional one): TPE on the same view.
        return self._tpe.sample_independent(seen.study, seen.trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._views.clear()  # one proposal at a time: only the asking trial's view is kept
        if len(study.directions) > 1:
            self._plain.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:  # fmt: skip
        self._views.pop(trial.number, None)
        if len(study.directions) > 1:
            self._plain.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        for sampler in (self._tpe, self._plain, self._gp, self._random):
            sampler.reseed_rng()


def _stand_in(trial: FrozenTrial, curve: dict[float, float], rung: float, worst: float,
              gp: bool, as_worst: bool, constraints: dict[str, float] | None) -> FrozenTrial:  # fmt: skip
    """``trial`` as the view at ``rung`` holds it."""
    common: dict[str, Any] = {"params": trial.params, "distributions": trial.distributions,
                              "constraints": constraints}  # fmt: skip
    if _infeasible(trial):  # no value of its own: the rung's worst, beside its constraints
        return create_trial(state=TrialState.COMPLETE, value=worst, **common)
    if rung in curve:
        return create_trial(state=TrialState.COMPLETE, value=curve[rung], **common)
    steps = [s for s in curve if s != FINAL]
    if steps and gp:  # a GP's view: running ones are pending, stopped ones worst (or left out)
        if trial.state == TrialState.RUNNING:
            return create_trial(state=TrialState.RUNNING, **common)
        if as_worst:
            return create_trial(state=TrialState.COMPLETE, value=worst, **common)
    if steps:  # stopped (or still running) below the rung: ranked by how far it got
        last = max(steps)
        return create_trial(state=TrialState.PRUNED,
                            intermediate_values={int(last): curve[last]}, **common)  # fmt: skip
    if trial.state == TrialState.RUNNING:
        return create_trial(state=TrialState.RUNNING, **common)
    return create_trial(state=TrialState.PRUNED, **common)  # stopped before its first report
