"""Run the trials with Ray Tune: one Tuner, Optuna as its searcher, a Ray scheduler.

Ray is started here (or joined, with ``ray.address``) only when a study actually runs. Actors
are reused across trials, which cuts Ray's per-trial overhead about tenfold; the trainable
frees memory between trials so reuse is safe.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from typing import Any

from ugro_hpo.components import instantiate
from ugro_hpo.errors import UserError
from ugro_hpo.plan import Plan, build_sampler
from ugro_hpo.storage import OpenedStudy
from ugro_hpo.tracking.base import Tracker, Trackers

log = logging.getLogger(__name__)

# Our trainable reports its own outcome keys and checks metrics itself (trainable.Reporter);
# Ray's strict check would reject the one-line report of an infeasible trial.
_RAY_ENV = {
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_DEDUP_LOGS": "1",
    # Trials keep the driver's working directory, so relative paths in a config still resolve.
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
}
# Ray loggers that speak of things we handle ourselves (result files we do not write, the
# local cluster's default token).
_QUIET_LOGGERS = (
    "ray.tune.analysis.experiment_analysis",
    "ray._private.authentication.authentication_token_setup",
    "ray.tune.tune",
)


@dataclass
class Components:
    """What is built before any study exists, so a bad option fails without side effects."""

    scheduler: Any
    trackers: Trackers
    callbacks: list[Any]  # Ray Tune callbacks configured as they are (not our trackers)


def build_components(plan: Plan) -> Components:
    """Instantiate the scheduler (metric and mode from the search space) and tracking callbacks."""
    from ray.tune.schedulers import FIFOScheduler

    scheduler = instantiate(plan.scheduler, "scheduler")
    space = plan.search_space
    if space.is_multi_objective and not isinstance(scheduler, FIFOScheduler):
        log.warning(
            "several objectives: early stopping needs one metric, so scheduler=fifo is used"
        )
        scheduler = FIFOScheduler()
    elif not space.is_multi_objective:
        scheduler.set_search_properties(space.objectives[0].name, space.objectives[0].mode)
    built = [
        instantiate(spec, f"tracking.callbacks.{name}") for name, spec in plan.callbacks.items()
    ]
    trackers = Trackers(
        [b for b in built if isinstance(b, Tracker)], required=plan.tracking_required
    )
    return Components(
        scheduler=scheduler,
        trackers=trackers,
        callbacks=[b for b in built if not isinstance(b, Tracker)],
    )


def ensure_ray(plan: Plan) -> None:
    """Start a local Ray, or join ``ray.address``; a Ray already running in-process is reused."""
    import ray

    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Ray times the define-by-run space, which includes the sampler's own work: a Gaussian
    # process takes a second or two per ask, which is the point of it, not a mistake.
    warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space`")
    if ray.is_initialized():
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "configure_logging": True,
        "logging_level": logging.WARNING,
        "log_to_driver": plan.verbose > 0,
    }
    if plan.ray_address:
        _check_reachable(plan.ray_address)
        try:
            ray.init(address=plan.ray_address, **options)
        except (ConnectionError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"ray.address={plan.ray_address}: cannot join the cluster ({first})"
            ) from None
    else:
        # "local": start a new instance even if another cluster was started on this machine.
        ray.init(address="local", num_cpus=plan.ray_num_cpus, **options)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``host:port`` (Ray itself retries
    for minutes before it gives up)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(
            f"ray.address={address}: nothing answers there ({exc.strerror or exc}); start the head "
            "node with `ray start --head` or fix the address"
        ) from None


@dataclass
class Outcome:
    """How the trials ended: ``complete``, ``interrupted``, ``stopped`` or ``time_budget``."""

    status: str
    reason: str | None = None


def run_trials(plan: Plan, opened: OpenedStudy, components: Components) -> Outcome:
    """Run trials until the study has ``n_trials`` finished ones (or something ends it early)."""
    from ray import tune

    from ugro_hpo.progress import Progress
    from ugro_hpo.run_control import FailureStreak, Heartbeat, InterruptWatch
    from ugro_hpo.searcher import StudySearcher
    from ugro_hpo.security.redaction import SecretDigests
    from ugro_hpo.storage import HEARTBEAT_S, INTERRUPTED, sampler_seed_offset
    from ugro_hpo.tracking.ray_bridge import TrackingCallback
    from ugro_hpo.trainable import run_trial

    ensure_ray(plan)
    _skip_callback_census()
    bridge = TrackingCallback(components.trackers)
    streak = FailureStreak(plan.max_consecutive_failures)
    watch = InterruptWatch()
    experiment = time.strftime("%Y-%m-%d_%H-%M-%S")
    deadline = time.time() + (plan.time_budget_s or float("inf"))
    objectives = plan.search_space.objectives
    progress = Progress(
        plan.n_trials,
        metric=objectives[0].name if len(objectives) == 1 else None,
        direction=objectives[0].direction,
        existing=opened.study.get_trials(deepcopy=False),
        interval_s=plan.progress_interval_s,
    )

    def finished(trial_id: str, frozen: Any) -> None:
        streak.record(frozen.state.name == "FAIL", frozen.user_attrs.get("error"))
        bridge.trial_finished(trial_id, frozen)
        progress.trial_finished(frozen)

    searcher = StudySearcher(
        space=plan.search_space,
        sampler=build_sampler(plan, seed_offset=sampler_seed_offset(plan, opened)),
        storage=opened.storage,
        study_name=plan.study_name,
        max_steps=plan.max_steps,
        n_trials=plan.n_trials,
        on_finish=finished,
        trial_logs=str(plan.ray_dir / experiment),
        halted=lambda: streak.tripped or watch.interrupted.is_set() or time.time() > deadline,
    )
    spec = {
        "objective": plan.objective,
        "metrics": plan.search_space.metric_names,
        "seed": plan.seed,
        "max_steps": plan.max_steps,
        "eval_every": plan.eval_every,
        "resources": plan.resources,
        "run_dir": str(plan.run_dir),
        "metadata": dict(plan.search_space.metadata),
        "trial_timeout_s": plan.trial_timeout_s,
        "secret_digests": SecretDigests.of_known(),
    }
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec=spec),
        {"cpu": plan.resources["cpu"], "gpu": plan.resources["gpu"]},
    )
    plan.ray_dir.mkdir(parents=True, exist_ok=True)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=components.scheduler,
            num_samples=-1,  # the searcher ends the study when n_trials have finished
            max_concurrent_trials=plan.parallel_jobs,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
            time_budget_s=plan.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=str(plan.ray_dir),
            callbacks=[watch, bridge, progress, *components.callbacks],
            stop=streak,
            verbose=min(max(plan.verbose - 1, 0), 3),
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        ),
    )
    started = time.time()
    try:
        with Heartbeat(searcher.heartbeat, HEARTBEAT_S):
            tuner.fit()
    finally:
        watch.restore()
        progress.close()
    if watch.interrupted.is_set():
        outcome = Outcome("interrupted", "interrupted by a signal")
    elif streak.tripped:
        outcome = Outcome("stopped", streak.reason())
    elif plan.time_budget_s and time.time() - started >= plan.time_budget_s:
        outcome = Outcome("time_budget", f"time_budget_s={plan.time_budget_s:g} reached")
    else:
        outcome = Outcome("complete")
    searcher.abandon(
        INTERRUPTED if outcome.status == "interrupted" else f"stopped early: {outcome.reason}"
    )
    return outcome


def _skip_callback_census() -> None:
    """Ray Tune's usage telemetry counts the run's callbacks by class, and to do so imports its
    MLflow, W&B, Comet and Aim integrations: about a second at every study start, for a tag.
    The count is skipped; nothing else in Ray reads it."""
    try:
        from ray.air._internal import usage
    except ImportError:  # moved in a later Ray: its own cost, nothing breaks
        return
    if hasattr(usage, "tag_callbacks"):
        usage.tag_callbacks = lambda callbacks: False


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (Ray's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"
