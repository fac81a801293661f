"""The Optuna study in persistent storage: create, resume, recover, or refuse a silent mix.

The storage is the study's single source of truth: Ray Tune's own experiment state is not
needed to continue. Rerunning the same command continues the study up to ``n_trials``. A trial
left RUNNING by a driver that died is failed and its parameters are queued once more: at once
when the driver ran on this machine and its process is gone, otherwise when its heartbeat
(renewed every `HEARTBEAT_S` seconds while it runs) is older than `GRACE_S` seconds, so drivers
on several machines can share one study without failing each other's trials.

The study is read through its public API (its cache makes finished trials cheap); writes to
running trials go through the storage object by trial id, which `optuna_compat` holds.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import random
import socket
import time
import warnings
import zlib
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ugro_hpo.errors import ConfigError
from ugro_hpo.optimize import optuna_compat as compat
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.warm_start import Source, Taken, choose, enqueue
from ugro_hpo.security.paths import refuse_linked_database
from ugro_hpo.security.redaction import redact_data, redact_text, redact_url

if TYPE_CHECKING:
    from ugro_hpo.study_plan import Plan

log = logging.getLogger(__name__)

HEARTBEAT_S = 30
GRACE_S = 120
ORPHAN_S = 10
SCHEMA_ATTEMPTS = 5


@dataclass
class OpenedStudy:
    """A study ready to receive trials, and the storage it lives in."""

    study: optuna.Study
    storage: optuna.storages.RDBStorage
    study_id: int
    resumed: bool
    existing_trials: int
    shared: bool = True
    """Can other drivers write to the study at the same time (a server database)? Only then
    can a trial commit after a later one, so only then do counts read the database afresh."""

    def close(self) -> None:
        """Close the database connections: SQLite then folds its write-ahead log into the
        database file, so the file alone holds the whole study (a copy of it misses nothing)."""
        compat.engine(self.storage).dispose()

    def trial_id(self, number: int) -> int:
        """The storage's id of trial ``number`` (what its write methods take)."""
        return compat.trial_id(self.storage, self.study_id, number)

    def trials(
        self, states: Container[TrialState] | None = None, fresh: bool = False
    ) -> list[FrozenTrial]:
        """The study's trials (not copied): through the study's cache, or ``fresh`` from the
        database itself. Counts that every driver must agree on read fresh: Optuna's cache
        never rereads a trial whose id is below one it has seen finish, and on a server
        database another driver's trial can commit after a later one did, so the cache can
        miss it for good. A fresh read costs a query for every trial (about 0.1 s at 500
        trials), so a SQLite study, whose writers take turns and commit in order, reads
        through the cache."""
        if fresh and self.shared:
            return compat.all_trials(self.storage, self.study_id, states)
        return self.study.get_trials(deepcopy=False, states=states)

    def reread(self) -> optuna.Study:
        """The study read afresh from the database, for its final summary (see `trials`)."""
        return optuna.load_study(
            study_name=self.study.study_name, storage=self.storage, sampler=self.study.sampler
        )

    def ran_and_running(self) -> tuple[int, int]:
        """Trials that ran (count towards ``n_trials``) and trials running, in one fresh read."""
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        outcomes = [p.outcome_of(t) for t in self.trials(states, fresh=True)]
        return sum(o in p.RAN for o in outcomes), outcomes.count(p.Outcome.RUNNING)


def quiet_optuna() -> None:
    """Optuna logs each study creation at INFO; our own log says what matters."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its schema set-up logs at INFO


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url``, with heartbeats; a one-line error if it cannot be opened
    (or if a SQLite file there is a symbolic link).

    Drivers that start together on an empty database both try to create Optuna's schema; the
    one that loses the race is refused by the database ("already exists") and simply tries
    again, finding the schema there.
    """
    quiet_optuna()
    compat.quiet_heartbeat_warning()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    refuse_linked_database(url)  # SQLite would write through a planted link
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            storage = optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=requeue_once,
            )
            if url.startswith("sqlite"):
                _write_ahead_log(storage)
            return storage
        except Exception as exc:  # a driver missing, a server unreachable, bad credentials
            if _created_meanwhile(exc) and attempt < SCHEMA_ATTEMPTS:
                time.sleep(random.uniform(0.05, 0.3) * attempt)
                continue
            raise ConfigError(
                f"storage: cannot open {redact_url(url)} ({type(exc).__name__}: {exc})"
            ) from None
    raise AssertionError("unreachable")


def _created_meanwhile(exc: BaseException) -> bool:
    """Did the database refuse because another driver created the same thing first?"""
    text = str(exc).lower()
    return type(exc).__name__ in ("IntegrityError", "ProgrammingError", "OperationalError") and (
        "already exists" in text or "duplicate" in text or "unique" in text
    )


def _write_ahead_log(storage: optuna.storages.RDBStorage) -> None:
    """SQLite in write-ahead-log mode with normal syncing: a commit costs a write, not a disk
    flush (a study commits several times per trial), readers such as ``analyze`` never wait
    for the writer, and a killed process loses nothing it committed."""
    import sqlalchemy

    def pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(compat.engine(storage), "connect", pragmas)
    compat.engine(storage).dispose()  # connections made before the listener reconnect with it


def set_study_attr(study: optuna.Study, key: str, value: Any) -> None:
    """Store a study attribute with every secret we know of scrubbed from it (other drivers and
    anyone who can read the database see the attributes)."""
    study.set_user_attr(key, redact_data(value))


@contextlib.contextmanager
def untrusted_read(what: str) -> Iterator[None]:
    """Reading a shared database: a value nested too deeply for Optuna to decode (planted by
    another driver) is a one-line error, not a traceback."""
    try:
        yield
    except RecursionError:
        raise ConfigError(
            f"{what}: a stored value is nested too deeply to read; the study database may have "
            "been altered"
        ) from None


def driver_id() -> str:
    """Who runs a trial: this machine and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def sampler_seed_offset(storage_url: str, existing_trials: int) -> int:
    """Offset of the sampler's seed: a resumed study does not replay its first points, and on a
    shared database (several drivers may start together) each driver draws its own points.
    Studies in SQLite, which has one driver, stay reproducible from ``seed``."""
    offset = existing_trials
    if not storage_url.startswith("sqlite"):
        offset += zlib.crc32(driver_id().encode()) % 1_000_003
    return offset


def requeue_once(study: optuna.Study, trial: FrozenTrial) -> None:
    """Run an interrupted trial's parameters again, once (a retry is not retried)."""
    if p.TRIAL_RETRY_OF not in trial.user_attrs and trial.params:
        study.enqueue_trial(trial.params, user_attrs={p.TRIAL_RETRY_OF: trial.number})
        log.info("trial %d was interrupted; its parameters are queued to run again", trial.number)


def fail_interrupted(opened: OpenedStudy, trial_id: int, reason: str = p.INTERRUPTED) -> None:
    """Mark one running trial failed with ``reason`` and queue its parameters once more."""
    storage = opened.storage
    try:
        compat.set_user_attr(storage, trial_id, p.TRIAL_ERROR, redact_text(reason))
        compat.set_failed(storage, trial_id)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # another process finished it meanwhile
    requeue_once(opened.study, compat.trial_by_id(storage, trial_id))


def recover_stale_trials(opened: OpenedStudy) -> None:
    """Fail trials whose driver is gone (same machine: process dead; elsewhere: no heartbeat)."""
    host = socket.gethostname()
    for trial in opened.trials((TrialState.RUNNING,), fresh=True):
        owner = str(trial.user_attrs.get(p.TRIAL_DRIVER, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            fail_interrupted(opened, opened.trial_id(trial.number))
    recover_orphans(opened)
    optuna.storages.fail_stale_trials(opened.study)


def recover_orphans(opened: OpenedStudy) -> None:
    """Fail trials that never got a driver: their driver died between asking for the trial and
    claiming it (milliseconds, so any such trial older than `ORPHAN_S` is an orphan). Safe to
    call while trials run: it never touches a claimed trial."""
    now = _dt.datetime.now()
    for trial in opened.trials((TrialState.RUNNING,), fresh=True):
        started = trial.datetime_start or now
        if p.TRIAL_DRIVER not in trial.user_attrs and (now - started).total_seconds() > ORPHAN_S:
            fail_interrupted(opened, opened.trial_id(trial.number))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a trial from an earlier run of this very process (a notebook, a test)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trials_that_ran(storage: optuna.storages.RDBStorage, study_name: str) -> int | None:
    """How many trials of an existing study ran (None: no such study). Reads, writes nothing."""
    with untrusted_read(f"study {study_name!r}"):
        if study_name not in optuna.get_all_study_names(storage):
            return None
        study = optuna.load_study(study_name=study_name, storage=storage)
        return sum(p.outcome_of(t) in p.RAN for t in study.get_trials(deepcopy=False))


def open_study(plan: Plan, storage: optuna.storages.RDBStorage | None = None) -> OpenedStudy:
    """Load or create the plan's study, recover trials of dead drivers, count what is there."""
    storage = storage or open_storage(plan.storage)
    with untrusted_read(f"storage {redact_url(plan.storage)}"):
        return _open_study(plan, storage)


def _open_study(plan: Plan, storage: optuna.storages.RDBStorage) -> OpenedStudy:
    names = set(optuna.get_all_study_names(storage))
    if plan.study_name in names and not plan.resume:
        _archive(storage, plan.study_name)
        names.discard(plan.study_name)

    resumed = plan.study_name in names
    if not resumed:
        # The earlier studies are read first: one that is missing leaves nothing created.
        warm = _warm_start(plan, storage)
        try:
            _create(plan, storage, *warm)
        except optuna.exceptions.DuplicatedStudyError:
            resumed = True  # another driver created it a moment ago
    study = optuna.load_study(study_name=plan.study_name, storage=storage)
    opened = OpenedStudy(study, storage, compat.study_id(storage, plan.study_name),
                         resumed, existing_trials=0,
                         shared=not plan.storage.startswith("sqlite"))  # fmt: skip
    if resumed:
        _check_same_space(study, plan)
        recover_stale_trials(opened)
    opened.existing_trials = len(opened.trials())
    return opened


def _warm_start(plan: Plan, storage: optuna.storages.RDBStorage) -> tuple[list[Taken], list[Any]]:
    """What the new study takes from the earlier ones (`warm_start`), each read as untrusted."""
    if not plan.warm_start:
        return [], []
    sources = [(Source(name, url), storage if url == plan.storage else open_storage(url))
               for name, url in plan.warm_start]  # fmt: skip
    with untrusted_read("warm_start: an earlier study"):
        return choose(sources, plan.search_space, plan.warm_start_trials)


def _create(plan: Plan, storage: optuna.storages.RDBStorage, warm: list[Taken],
            warm_record: list[dict[str, Any]]) -> None:  # fmt: skip
    space = plan.search_space
    directions: list[Any] = [o.direction for o in space.objectives]
    study = optuna.create_study(study_name=plan.study_name, storage=storage, directions=directions)
    set_study_attr(study, p.STUDY_SPACE, space.fingerprint())
    set_study_attr(study, p.STUDY_OBJECTIVES, [o.name for o in space.objectives])
    if warm_record:
        set_study_attr(study, p.STUDY_WARM_START, warm_record)
    enqueue(study, warm)  # the earlier studies' best first, then the space's defaults
    defaults = space.defaults()
    # A grid proposes the defaults' point first itself (`samplers.StudyGridSampler`): queued,
    # it would run twice.
    if defaults and plan.sampler_name != "optuna.samplers.GridSampler":
        study.enqueue_trial(defaults, user_attrs={p.TRIAL_ORIGIN: "defaults"})


def _check_same_space(study: optuna.Study, plan: Plan) -> None:
    stored = study.user_attrs.get(p.STUDY_SPACE)
    if stored is not None and stored != redact_text(plan.search_space.fingerprint()):
        raise ConfigError(
            f"study_name: study {plan.study_name!r} was created with a different search space; "
            "use a new study_name, or resume=false to archive the old study and start afresh"
        )
    directions = [o.direction for o in plan.search_space.objectives]
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(
            f"study_name: study {plan.study_name!r} optimises other objectives; use a new study_name"
        )


def _archive(storage: optuna.storages.BaseStorage, name: str) -> None:
    """resume=false: keep the old study under a dated name, then start the name afresh."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    archived = f"{name}-archived-{stamp}"
    optuna.copy_study(
        from_study_name=name, from_storage=storage, to_storage=storage, to_study_name=archived
    )
    optuna.delete_study(study_name=name, storage=storage)
    log.warning("resume=false: the previous study %r is kept as %r", name, archived)
