"""The study in storage: created or continued, a changed space refused, the trials of a dead
driver recovered, drivers that race to create the schema, and attributes scrubbed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from ugro_hpo.config.plan import build_plan
from ugro_hpo.errors import ConfigError
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize import storage as st
from ugro_hpo.security.redaction import register

QUICK = ["objective=synthetic", "search_space=quadratic", "tracking=none", "n_trials=3"]


def _plan(compose, tmp_path: Path, *overrides: str):  # type: ignore[no-untyped-def]
    return build_plan(compose(*QUICK, *overrides), tmp_path / "run")


def test_a_new_study_is_created_with_its_space_and_defaults_queued(compose, tmp_path: Path) -> None:
    plan = _plan(compose, tmp_path)
    opened = st.open_study(plan)
    assert not opened.resumed and opened.existing_trials == 1  # the defaults, waiting
    (queued,) = opened.trials()
    assert queued.state == TrialState.WAITING and queued.user_attrs[p.TRIAL_ORIGIN] == "defaults"
    assert opened.study.user_attrs[p.STUDY_SPACE] == plan.search_space.fingerprint()
    assert opened.trial_id(0) == opened.storage.get_trial_id_from_study_id_trial_number(
        opened.study_id, 0
    )


def test_the_same_command_continues_and_a_changed_space_is_refused(compose, tmp_path: Path) -> None:
    st.open_study(_plan(compose, tmp_path))
    assert st.open_study(_plan(compose, tmp_path)).resumed
    with pytest.raises(ConfigError, match="created with a different search space"):
        st.open_study(_plan(compose, tmp_path, "search_space=rosenbrock"))


def test_resume_false_archives_the_old_study(compose, tmp_path: Path) -> None:
    plan = _plan(compose, tmp_path)
    st.open_study(plan)
    opened = st.open_study(_plan(compose, tmp_path, "resume=false"))
    names = optuna.get_all_study_names(opened.storage)
    assert not opened.resumed and any(n.startswith(f"{plan.study_name}-archived-") for n in names)


def _running_trial(opened: st.OpenedStudy, driver: str | None) -> optuna.trial.Trial:
    trial = opened.study.ask()
    trial.suggest_float("x1", 0, 1)
    if driver is not None:
        trial.set_user_attr(p.TRIAL_DRIVER, driver)
    return trial


def test_trials_of_a_dead_driver_on_this_machine_are_failed_and_queued_again(
    compose, tmp_path: Path
) -> None:
    opened = st.open_study(_plan(compose, tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    trial = _running_trial(opened, f"{st.socket.gethostname()}:{int(dead.stdout)}")
    alive = _running_trial(opened, f"{st.socket.gethostname()}:{os.getppid()}")
    elsewhere = _running_trial(opened, "another-host:1")
    st.recover_stale_trials(opened)
    by_number = {t.number: t for t in opened.trials()}
    assert by_number[trial.number].state == TrialState.FAIL
    assert by_number[trial.number].user_attrs[p.TRIAL_ERROR] == p.INTERRUPTED
    assert by_number[alive.number].state == TrialState.RUNNING  # its driver is alive
    assert by_number[elsewhere.number].state == TrialState.RUNNING  # its heartbeat decides
    retries = [t for t in by_number.values() if t.user_attrs.get(p.TRIAL_RETRY_OF) == trial.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING


def test_a_trial_no_driver_claimed_is_an_orphan_after_a_while(
    compose, tmp_path: Path, monkeypatch
) -> None:
    opened = st.open_study(_plan(compose, tmp_path))
    orphan = _running_trial(opened, None)
    st.recover_orphans(opened)
    assert opened.trials((TrialState.RUNNING,))[0].number == orphan.number  # too young yet
    monkeypatch.setattr(st, "ORPHAN_S", -1)
    st.recover_orphans(opened)
    assert {t.number: t.state for t in opened.trials()}[orphan.number] == TrialState.FAIL


def test_ran_and_running_count_what_the_budget_counts(compose, tmp_path: Path) -> None:
    opened = st.open_study(_plan(compose, tmp_path))
    study = opened.study
    for value, state, attrs in ((1.0, TrialState.COMPLETE, {}), (None, TrialState.PRUNED, {}),
                                (None, TrialState.FAIL, {}), (2.0, TrialState.COMPLETE, {p.TRIAL_STATE: "infeasible"})):  # fmt: skip
        trial = _running_trial(opened, "h:1")
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        study.tell(trial, value, state=state)
    _running_trial(opened, "h:1")
    assert opened.ran_and_running() == (2, 1)  # complete + pruned; the infeasible never ran
    assert st.trials_that_ran(opened.storage, study.study_name) == 2
    assert st.trials_that_ran(opened.storage, "no-such-study") is None


def test_a_trial_committed_late_by_another_driver_still_counts(compose, tmp_path: Path) -> None:
    """On a server database a trial can commit after a later one finished; Optuna's cache then
    never sees it, so the budget must be counted from the database itself."""
    opened = st.open_study(_plan(compose, tmp_path))
    assert not opened.shared  # SQLite: one writer at a time, trials commit in order ...
    opened.shared = True  # ... so this test plays a server database's part on it
    other = optuna.create_study(storage=opened.storage, study_name="elsewhere")
    opened.study.tell(_running_trial(opened, "h:1"), 1.0)  # the queued defaults
    late = opened.storage.create_new_trial(opened.study_id)  # another driver's, not committed yet
    hide = sqlalchemy.text("UPDATE trials SET study_id = :study WHERE trial_id = :trial")
    with opened.storage.engine.begin() as connection:
        connection.execute(hide, {"study": other._study_id, "trial": late})
    opened.study.tell(_running_trial(opened, "h:1"), 1.0)
    assert opened.study.get_trials(deepcopy=False)  # the cache has read past the late trial
    with opened.storage.engine.begin() as connection:  # ... which commits now
        connection.execute(hide, {"study": opened.study_id, "trial": late})
    cached = opened.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert cached == []  # what the cache shows: the gap this guards against
    assert opened.ran_and_running() == (2, 1)


def test_study_attributes_are_scrubbed(compose, tmp_path: Path) -> None:
    register("attr-secret-value-42")
    opened = st.open_study(_plan(compose, tmp_path))
    st.set_study_attr(
        opened.study, "note", {"text": "token=abc123; so attr-secret-value-42 here", "api_key": "k"}
    )
    assert opened.study.user_attrs["note"] == {"text": "token=***; so *** here", "api_key": "***"}


@pytest.mark.parametrize(
    ("message", "retried"),
    [('duplicate key value violates unique constraint "pg_type_typname_nsp_index"', True),
     ('relation "studies" already exists', True), ("password authentication failed", False)],
)  # fmt: skip
def test_a_schema_another_driver_created_first_is_tried_again(message: str, retried: bool) -> None:
    error = type("IntegrityError", (Exception,), {})(message)
    assert st._created_meanwhile(error) is retried


def test_the_seed_offset_keeps_sqlite_reproducible_and_drivers_apart() -> None:
    assert st.sampler_seed_offset("sqlite:///x.db", 7) == 7
    shared = st.sampler_seed_offset("postgresql://h/db", 7)
    assert shared != 7 and shared == st.sampler_seed_offset("postgresql://h/db", 7)


def test_a_value_nested_too_deeply_to_decode_is_one_line() -> None:
    with pytest.raises(ConfigError, match="nested too deeply to read"), st.untrusted_read("x"):
        raise RecursionError


def _open_at_the_barrier(url: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()  # both processes create Optuna's schema at the same instant
    try:
        storage = st.open_storage(url)
        optuna.create_study(study_name="race", storage=storage, load_if_exists=True)
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_two_drivers_opening_an_empty_database_at_once_both_succeed(postgres_url: str) -> None:
    """Without the retry, one of the two is refused every time (UniqueViolation on Optuna's
    enum type); each attempt starts from an empty schema of its own."""
    import multiprocessing

    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    context = multiprocessing.get_context("spawn")
    for attempt in range(4):
        schema = f"open_race_{os.getpid()}_{attempt}"
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
        try:
            url = f"{postgres_url}?options=-csearch_path%3D{schema}"
            barrier, results = context.Barrier(2), context.Queue()
            workers = [
                context.Process(target=_open_at_the_barrier, args=(url, barrier, results))
                for _ in range(2)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=120)
            assert [results.get(timeout=5) for _ in workers] == ["ok", "ok"]
        finally:
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
