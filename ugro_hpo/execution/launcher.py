"""Run the trials with Ray Tune: one Tuner, our Optuna searcher, a Ray scheduler.

Ray is started here (or joined, with ``ray.address``) only when a study actually runs. Actors
are reused across trials, which cuts Ray's per-trial overhead about tenfold; the trainable
frees memory between trials so reuse is safe. The driver hears of trials through the searcher,
which tells the tracking hub, which tells progress, the failure streak, an objective's guard and
the trackers (`ugro_hpo.trial_events`); it ends the run through a stopper, so it registers
no Ray callbacks of its own: only those a user configures are passed to Ray. The search
algorithm Tune is given also fails a trial Tune drops without a word (`lost_trials`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ugro_hpo.components import instantiate
from ugro_hpo.execution.ray_session import ensure_ray
from ugro_hpo.execution.resources import GROUP_DRIVER_CPU, LOCAL, check_placeable, ray_capacity
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.samplers import build_sampler
from ugro_hpo.optimize.storage import OpenedStudy
from ugro_hpo.study_plan import LiveParts, Plan
from ugro_hpo.tracking.hub import Trackers
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart

log = logging.getLogger(__name__)


@dataclass
class Components:
    """What the trials run with, besides the plan: built once, when the study starts."""

    scheduler: Any
    trackers: Trackers
    ray_callbacks: list[Any]  # Ray Tune callbacks a user configured (not our trackers)
    parts: LiveParts  # the objective checked on the driver, and the one the trials receive


def build_components(plan: Plan, parts: LiveParts) -> Components:
    """The scheduler (metric and mode from the search space), the hub of the trackers the plan
    built, and any other configured Ray callbacks."""
    scheduler = instantiate(plan.scheduler, "scheduler")  # one the plan found fit for the space
    space = plan.search_space
    if not space.is_multi_objective:
        scheduler.set_search_properties(space.objectives[0].name, space.objectives[0].mode)
    others = [instantiate(spec, f"tracking.callbacks.{name}") for name, spec in plan.tracker_specs.items()
              if not str(spec["_target_"]).startswith("ugro_hpo.")]  # fmt: skip
    return Components(
        scheduler=scheduler,
        trackers=Trackers(list(parts.trackers), required=plan.tracking_required),
        ray_callbacks=others,
        parts=parts,
    )


def start_ray(plan: Plan) -> None:
    """Start (or join) Ray, then check once more, now with Ray's own count of this machine's
    CPUs and GPUs, that a trial can be placed."""
    started_here = not plan.ray_address
    ensure_ray(plan)
    if started_here:
        check_placeable(plan.resources, ray_capacity(LOCAL), plan.ray_autoscaler, plan.workers)


def stop_ray() -> None:
    """End the local Ray this process started, or leave the cluster it joined. Its processes
    take a second or two to stop; a command about to exit calls this on a thread of its own
    once the trials are done, so that time overlaps the summary and report. The study is
    stored by then: a failure here is logged, never the command's failure (Ray's exit handler
    tries again)."""
    import ray

    try:
        ray.shutdown()
    except Exception as exc:
        log.warning("Ray did not stop cleanly (%s); the study's results are unaffected", exc)


@dataclass
class StudyEnding:
    """How the trials ended: ``complete``, ``interrupted``, ``stopped``, ``budget`` (budget.steps)
    or ``time_budget``. A ``complete`` ending with a reason came before ``n_trials`` because
    nothing was left to run (a grid search that ran every point)."""

    status: str
    reason: str | None = None


class _StreakListener:
    """Feeds the failure streak with the trials that ran (a proposal that never ran is no
    evidence of a bug in the objective)."""

    def __init__(self, streak: Any, started: set[str]) -> None:
        self.streak = streak
        self.started = started

    def trial_started(self, start: TrialStart) -> None:
        self.started.add(start.trial_id)

    def trial_result(self, result: TrialResult) -> None:
        return None

    def trial_finished(self, end: TrialEnd) -> None:
        if end.trial_id in self.started:
            self.streak.record(end.state == p.Outcome.FAILED, end.error)


def run_trials(plan: Plan, opened: OpenedStudy, components: Components) -> StudyEnding:
    """Run trials until ``n_trials`` of them have run (or something ends the study early)."""
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from ugro_hpo.execution.group_release import GroupRelease
    from ugro_hpo.execution.progress import Progress
    from ugro_hpo.execution.ray_compat import GuardedSearch, experiment_folder
    from ugro_hpo.execution.retries import RetryRecord
    from ugro_hpo.execution.run_control import FailureStreak, Heartbeat, InterruptWatch, RunStopper
    from ugro_hpo.execution.step_budget import StepBudget
    from ugro_hpo.execution.trainable import run_trial
    from ugro_hpo.optimize.checkpoints import CheckpointPlace
    from ugro_hpo.optimize.rung_steps import milestones
    from ugro_hpo.optimize.searcher import StudySearcher
    from ugro_hpo.optimize.storage import HEARTBEAT_S, sampler_seed_offset
    from ugro_hpo.security.digests import SecretDigests

    ensure_ray(plan)
    streak = FailureStreak(plan.max_consecutive_failures)
    # An objective's own rules for ending the study (the Hydra sweeper's max_failure_rate):
    # a listener of the trials' events with `tripped` and `reason`.
    guard = getattr(components.parts.objective, "guard", None)
    guards = [guard] if guard is not None else []
    watch = InterruptWatch()
    experiment = time.strftime("%Y-%m-%d_%H-%M-%S")
    deadline = time.time() + (plan.time_budget_s or float("inf"))
    goals = plan.search_space.objectives
    progress = Progress(
        plan.n_trials,
        metric=goals[0].name if len(goals) == 1 else None,
        direction=goals[0].direction,
        existing=opened.trials(),
        interval_s=plan.progress_interval_s,
    )
    budget = StepBudget(plan.budget_steps, opened.trials())
    progress.budget = budget if plan.budget_steps is not None else None
    objective = components.parts.objective
    components.trackers.listen(_StreakListener(streak, set()), budget, progress, *guards,
                               *objective.listeners)  # fmt: skip
    components.trackers.rungs = milestones(plan.scheduler, plan.max_steps)
    seed_offset = sampler_seed_offset(plan.storage, opened.existing_trials)
    opened.study = optuna.load_study(study_name=plan.study_name, storage=opened.storage,
                                     sampler=build_sampler(plan, seed_offset=seed_offset))  # fmt: skip
    searcher = StudySearcher(
        opened,
        plan.search_space,
        n_trials=plan.n_trials,
        max_steps=plan.max_steps,
        events=components.trackers,
        halted=lambda: (
            streak.tripped
            or watch.interrupted.is_set()
            or time.time() > deadline
            or budget.tripped
            or any(g.tripped for g in guards)
        ),
        trial_logs=str(plan.ray_dir / experiment),
        extend=getattr(components.parts.objective, "extend_trial", None),
        checkpoints=CheckpointPlace(
            plan.ray_storage,
            experiment,
            getattr(components.parts.objective, "keep_checkpoints", None),
        ),
    )
    spec = {
        "objective": components.parts.sent_objective,
        "metrics": plan.search_space.metric_names,
        "seed": plan.seed,
        "max_steps": plan.max_steps,
        "eval_every": plan.eval_every,
        "resources": plan.resources,
        "run_dir": str(plan.run_dir),
        "metadata": dict(plan.search_space.metadata),
        "trial_timeout_s": plan.trial_timeout_s,
        "secret_digests": SecretDigests.of_known(),
        "workers": plan.workers,
        "strategy": plan.strategy,
        # This run's folder in Ray's storage: a group's trial keeps its records in its own
        # folder there (a reused actor's Tune context names another one, `train_group`).
        "experiment_storage": experiment_folder(plan.ray_storage, experiment),
    }
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec=spec),
        # A group's workers hold the trial's resources (`train_group`); its Tune trial only
        # waits for them.
        {"cpu": plan.resources["cpu"], "gpu": plan.resources["gpu"]}
        if plan.workers == 1
        else {"cpu": GROUP_DRIVER_CPU, "gpu": 0},
    )
    if plan.ray_storage == str(plan.ray_dir):  # a local or shared folder, not a bucket
        plan.ray_dir.mkdir(parents=True, exist_ok=True)
    stopper = RunStopper(
        lambda: (
            streak.tripped
            or watch.interrupted.is_set()
            or searcher.unsatisfiable is not None
            or any(g.tripped for g in guards)
        ),
        stop_trials=lambda: budget.tripped,
    )
    # What Tune builds from a Searcher and max_concurrent_trials, built here so that a trial
    # Tune drops is reported through the limiter like every other ending (see lost_trials).
    search = GuardedSearch(ConcurrencyLimiter(searcher, max_concurrent=plan.parallel_jobs))
    callbacks = list(components.ray_callbacks)
    if plan.workers > 1:  # a stopped group's CPUs and GPUs go back as soon as its trial ends
        callbacks.append(GroupRelease())
    if plan.max_failures > 0:  # a retry after a dead worker records where it resumed
        callbacks.append(RetryRecord(searcher))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search,
            scheduler=components.scheduler,
            num_samples=-1,  # the searcher ends the study when n_trials have run
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
            time_budget_s=plan.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=plan.ray_storage,
            # A trial's last checkpoint is all a rerun needs (`optimize.checkpoints`).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=callbacks or None,
            stop=stopper,
            verbose=min(max(plan.verbose - 1, 0), 3),
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        ),
    )
    started = time.time()
    try:
        with watch, Heartbeat(searcher.heartbeat, HEARTBEAT_S), Heartbeat(progress.tick, 1.0):
            tuner.fit()
    finally:
        progress.close()
    ending = study_ending(
        interrupted=watch.interrupted.is_set(),
        guards=guards,
        streak=streak,
        unsatisfiable=searcher.unsatisfiable,
        grid_points=searcher.grid_points,
        budget=budget,
        time_budget_s=plan.time_budget_s,
        elapsed_s=time.time() - started,
    )
    searcher.abandon(
        p.INTERRUPTED if ending.status == "interrupted" else f"{p.STOPPED_EARLY}{ending.reason}"
    )
    objective.trials_over()
    return ending


def study_ending(
    *,
    interrupted: bool,
    guards: list[Any],
    streak: Any,
    unsatisfiable: str | None,
    budget: Any = None,
    time_budget_s: float | None,
    elapsed_s: float,
    grid_points: int | None = None,
) -> StudyEnding:
    """Why Tune's run ended, first cause first: a signal, an objective's guard, the failure
    streak, constraints that look unsatisfiable, the step budget, the time budget, a grid
    with every point run; otherwise ``n_trials`` ran."""
    if interrupted:
        return StudyEnding("interrupted", "interrupted by a signal")
    if any(g.tripped for g in guards):
        return StudyEnding("stopped", next(g.reason for g in guards if g.tripped))
    if streak.tripped:
        return StudyEnding("stopped", streak.reason())
    if unsatisfiable:
        return StudyEnding("stopped", unsatisfiable)
    if budget is not None and budget.tripped:
        return StudyEnding("budget", budget.reason())
    if time_budget_s and elapsed_s >= time_budget_s:
        return StudyEnding("time_budget", f"time_budget_s={time_budget_s:g} reached")
    if grid_points is not None:
        return StudyEnding(
            "complete", f"search=grid: all {grid_points} points of the grid have run"
        )
    return StudyEnding("complete")


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (Ray's default spells out the whole config)."""
    from ugro_hpo.optimize.checkpoints import trial_dir_name

    return trial_dir_name(trial.trial_id)
