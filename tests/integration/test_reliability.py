"""Reliability with real processes: crashes, interrupts, failing workers, time limits, a
two-node Ray cluster with token authentication, and two drivers sharing a PostgreSQL study."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import run_cli

from ugro_hpo.optimize.protocol import RAN, TRIAL_ERROR, outcome_of

pytestmark = pytest.mark.integration

SLOW = ["objective=synthetic", "search_space=quadratic", "max_steps=4", "eval_every=1", "objective.sleep_s=0.25",
        "scheduler=fifo", "n_trials=8", "parallel_jobs=2"]  # fmt: skip
"""About one second per trial, so a signal lands while trials run."""


def run_two_drivers(args: list[str], tmp_path: Path) -> None:
    """Start two drivers with the same command at once, each in its own folder; both must succeed."""
    drivers = []
    for index in range(2):
        (tmp_path / f"driver{index}").mkdir()
        drivers.append(start_driver(*args, cwd=tmp_path / f"driver{index}"))
    try:
        outputs = [d.communicate(timeout=300) for d in drivers]
    finally:
        for driver in drivers:
            stop_group(driver)
    for driver, (_, stderr) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, stderr[-3000:]


def start_driver(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ugro_hpo", *args], cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def count(db: Path, states: tuple[str, ...] = ("COMPLETE", "PRUNED")) -> int:
    try:
        with sqlite3.connect(db) as conn:
            marks = ",".join("?" * len(states))
            return conn.execute(
                f"select count(*) from trials where state in ({marks})", states
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def ran(db: Path, name: str) -> int:
    """Trials of study ``name`` that ran (an infeasible proposal is stored COMPLETE but never ran)."""
    return sum(outcome_of(t) in RAN for t in study_of(f"sqlite:///{db}", name).trials)


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)


def read_until(process: subprocess.Popen[str], text: str) -> str:
    """The driver's stderr up to and including the first line holding ``text`` (or all of it,
    if the driver ends first)."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if text in line:
            break
    return "".join(seen)


def stop_group(process: subprocess.Popen[str]) -> None:
    """End a driver we started, and anything it started, by process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def study_of(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_kill_9_then_rerun_finishes_without_losing_or_repeating_anything(
    tmp_path: Path, ray_address: str
) -> None:
    args = [*SLOW, "study_name=crash", f"ray.address={ray_address}", "tracking=mlflow"]
    db = tmp_path / "outputs" / "studies.db"
    driver = start_driver(*args, cwd=tmp_path)
    try:
        wait_for(lambda: count(db) >= 3)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        stop_group(driver)
    assert count(db, ("RUNNING",)) >= 1  # the crash left trials running

    rerun = run_cli(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = study_of(f"sqlite:///{db}", "crash")
    finished = [t for t in study.trials if outcome_of(t) in RAN]
    assert len(finished) == 8
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    points = Counter(tuple(sorted(t.params.items())) for t in finished)
    assert max(points.values()) == 1  # no completed point was run again
    retried = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert retried and all(
        study.trials[t.user_attrs["retry_of"]].state == optuna.trial.TrialState.FAIL
        for t in retried
    )

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("ugro-hpo").experiment_id], max_results=1000
    )
    parents = [r for r in runs if r.data.tags.get("ugro.role") == "study"]
    children = [r for r in runs if r.data.tags.get("ugro.role") == "trial"]
    assert len(parents) == 1
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    done = Counter(
        int(c.data.tags["ugro.trial_number"])
        for c in children
        if c.data.tags.get("ugro.state") in ("complete", "pruned")
    )
    assert sorted(done) == sorted(t.number for t in finished) and set(done.values()) == {1}


@pytest.mark.slow
def test_ctrl_c_saves_everything_and_the_rerun_finishes(tmp_path: Path, ray_address: str) -> None:
    args = [*SLOW, "study_name=interrupted", f"ray.address={ray_address}", "tracking=none"]
    db = tmp_path / "outputs" / "studies.db"
    driver = start_driver(*args, cwd=tmp_path)
    try:
        wait_for(lambda: count(db) >= 2)
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        stop_group(driver)
    assert driver.returncode == 130, stderr[-3000:]
    assert "interrupted: finished trials are saved" in stderr
    summary = json.loads(
        next((tmp_path / "outputs" / "interrupted").glob("*/summary.json")).read_text()
    )
    assert summary["status"] == "interrupted" and summary["finished"] >= 2
    assert count(db, ("RUNNING",)) == 0  # the storage is consistent: nothing left running

    rerun = run_cli(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert ran(db, "interrupted") == 8


@pytest.mark.slow
def test_sigterm_works_like_ctrl_c_and_a_second_signal_leaves_at_once(
    tmp_path: Path, ray_address: str
) -> None:
    args = [
        *SLOW,
        "study_name=terminated",
        f"ray.address={ray_address}",
        "tracking=none",
        "objective.sleep_s=1.0",
    ]
    db = tmp_path / "outputs" / "studies.db"
    driver = start_driver(*args, cwd=tmp_path)
    try:
        wait_for(lambda: count(db, ("RUNNING",)) >= 1)
        driver.send_signal(signal.SIGTERM)
        # Two signals sent before the driver's handler has run merge into one (the kernel keeps
        # one pending signal of a kind): send the second once the first has been heard.
        heard = read_until(driver, "SIGTERM: stopping the running trials")
        driver.send_signal(signal.SIGTERM)
        _, rest = driver.communicate(timeout=60)
        stderr = heard + rest
    finally:
        stop_group(driver)
    assert driver.returncode == 130, stderr[-3000:]
    assert "interrupted again: exiting now" in stderr  # the second signal, not the end of the run
    study_of(f"sqlite:///{db}", "terminated")  # loads: nothing corrupted
    rerun = run_cli(*args, "objective.sleep_s=0.01", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert ran(db, "terminated") == 8 and count(db, ("RUNNING",)) == 0


@pytest.mark.slow
def test_a_dying_worker_fails_its_trial_with_a_pointer_to_ray_s_report(
    study, tmp_path: Path
) -> None:
    result = study("search_space=quadratic", "objective=custom", "objective.fn=fixture_objectives:always_dies",
                   "tracking=none", "n_trials=2", "max_consecutive_failures=2", "parallel_jobs=1")  # fmt: skip
    assert result.status == "stopped"
    first = result.records[0]
    assert (
        first.state == "failed"
        and "worker process failed" in first.error
        and "error.txt" in first.error
    )


@pytest.mark.slow
def test_max_failures_retries_a_trial_whose_worker_died(study) -> None:
    markers = Path(os.environ["UGRO_TEST_MARKERS"])  # set before the session's Ray started
    before = set(markers.iterdir())
    result = study("search_space=quadratic", "objective=custom", "objective.fn=fixture_objectives:dies_once",
                   "tracking=none", "n_trials=2", "max_failures=1", "parallel_jobs=1")  # fmt: skip
    assert result.summary["counts"]["complete"] == 2 and result.summary["counts"]["failed"] == 0
    assert len(set(markers.iterdir()) - before) == 2  # each trial's worker really died once


@pytest.mark.slow
def test_ray_s_retry_of_a_dead_worker_goes_on_from_the_trial_s_last_checkpoint(study) -> None:
    markers = Path(os.environ["UGRO_TEST_MARKERS"])
    before = set(markers.iterdir())
    result = study("search_space=quadratic", "objective=custom", "max_steps=4",
                   "objective.fn=fixture_objectives:checkpointed_dies_once", "tracking=none",
                   "n_trials=2", "max_failures=1", "parallel_jobs=1")  # fmt: skip
    assert len(set(markers.iterdir()) - before) == 2  # each trial's worker died at step 3
    assert result.summary["counts"]["complete"] == 2 and result.summary["counts"]["failed"] == 0
    for record in result.records:
        # The retry read the checkpoint of step 2 (not step 0) and the study says so.
        assert record.metrics["started_at"] == 2.0 and record.resumed_from_step == 2
        assert record.last_step == 4
    assert result.summary["resumed_from_step"] == {str(r.number): 2 for r in result.records}


@pytest.mark.slow
def test_trial_timeout_stops_slow_trials_and_the_study_goes_on(study) -> None:
    result = study(*SLOW, "trial_timeout_s=0.6", "n_trials=3", "tracking=none")
    assert result.summary["finished"] == 3
    for record in result.records:
        assert record.state == "pruned" and record.last_step < 4


@pytest.mark.slow
def test_time_budget_ends_the_study_cleanly(study) -> None:
    # Two trials finish at once; the rest wait at a gate that never opens, so the budget, not
    # the machine's speed, is what ends the study.
    gate = Path(os.environ["UGRO_TEST_MARKERS"]) / "gate"
    shutil.rmtree(gate, ignore_errors=True)
    result = study("objective=custom", "objective.fn=fixture_objectives:gated_quadratic", "search_space=quadratic",
                   "max_steps=1", "eval_every=1", "scheduler=fifo", "time_budget_s=8", "n_trials=50",
                   "parallel_jobs=2", "tracking=none")  # fmt: skip
    assert result.status == "time_budget" and 0 < result.summary["finished"] <= 2
    assert result.summary["reason"] == "time_budget_s=8 reached"
    assert not [r for r in result.records if r.state == "running"]


HANDOVER = ["objective=custom", "objective.fn=fixture_objectives:slow_to_stop", "search_space=quadratic",
             "max_steps=3", "eval_every=1", "scheduler=asha", "n_trials=4", "parallel_jobs=1",
             "tracking=none", "study_name=handover"]  # fmt: skip
"""Every trial after the first is stopped at step 1 and takes 3 s to end; the next trial is
handed its worker (actors are reused), so it must wait for that."""


def outcomes(db: Path, name: str) -> Counter[str]:
    return Counter(str(outcome_of(t)) for t in study_of(f"sqlite:///{db}", name).trials)


def finish(driver: subprocess.Popen[str], timeout: float = 240) -> str:
    """Wait for a driver we started; a study that never ends fails the test instead of hanging it."""
    try:
        _, stderr = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(driver)
        raise AssertionError(f"the study did not end within {timeout:g} s") from None
    finally:
        stop_group(driver)
    assert driver.returncode == 0, stderr[-3000:]
    return stderr


@pytest.mark.slow
def test_a_worker_still_ending_its_stopped_trial_is_waited_for(
    tmp_path: Path, ray_address: str
) -> None:
    """Ray Tune's own wait is 2 s; a trial given a worker still ending the last one would be lost."""
    finish(start_driver(*HANDOVER, f"ray.address={ray_address}", cwd=tmp_path))
    assert outcomes(tmp_path / "outputs" / "studies.db", "handover") == {"complete": 1, "pruned": 3}


@pytest.mark.slow
def test_a_trial_ray_tune_loses_is_stored_as_failed_and_the_study_goes_on(tmp_path: Path) -> None:
    """With Ray Tune's wait set below the 3 s (a user's setting wins over ours), Tune ends the
    next trial without telling the searcher; the study must not wait for it forever. Each lost
    trial is failed and replaced (a failed trial does not count towards n_trials): the worker
    goes with it, the next trial starts a fresh one and is stopped, the one after is lost."""
    stderr = finish(
        start_driver(*HANDOVER, cwd=tmp_path, env={"TUNE_FUNCTION_THREAD_TIMEOUT_S": "1"})
    )
    db = tmp_path / "outputs" / "studies.db"
    assert outcomes(db, "handover") == {"complete": 1, "pruned": 3, "failed": 2}
    for trial in study_of(f"sqlite:///{db}", "handover").trials:
        if outcome_of(trial) == "failed":
            assert "ended this trial before it started" in trial.user_attrs[TRIAL_ERROR]
    assert "ended this trial before it started" in stderr


@pytest.mark.slow
def test_a_trial_that_no_driver_claimed_does_not_block_the_study(study) -> None:
    """A driver killed between asking Optuna for a trial and claiming it leaves an orphan in
    RUNNING; the study must fail it and go on rather than wait for it forever."""
    args = ("search_space=quadratic", "objective=synthetic", "max_steps=1", "eval_every=1", "tracking=none",
            "study_name=orphan", "time_budget_s=90")  # fmt: skip
    first = study(*args, "n_trials=3")
    stored = study_of(first.plan.storage, "orphan")
    orphan = stored.ask()  # RUNNING, no driver, no heartbeat
    second = study(*args, "n_trials=5")
    assert second.status == "complete" and second.summary["finished"] == 5
    assert stored.trials[orphan.number].state == optuna.trial.TrialState.FAIL


# -- scale-out ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_cluster_is_a_one_line_error_in_seconds(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there once the probe socket is closed
    started = time.time()
    result = run_cli("objective=synthetic", "search_space=branin", "tracking=none",
                     f"ray.address=127.0.0.1:{port}", cwd=tmp_path, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert time.time() - started < 30  # Ray alone would retry for minutes
    assert result.stderr.strip().splitlines() == [
        f"ugro_hpo: error: ray.address=127.0.0.1:{port}: nothing answers there (Connection "
        "refused); start the head node with `ray start --head` or fix the address"
    ]
    assert not (tmp_path / "outputs").exists()  # nothing half-written


NODES_ALIVE = """
import sys, time, ray
want, deadline = int(sys.argv[2]), time.monotonic() + 240
while True:  # the head may not answer yet; the worker node registers with it later
    try:
        ray.init(address=sys.argv[1], logging_level="ERROR")
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
while sum(n["Alive"] for n in ray.nodes()) < want:
    if time.monotonic() > deadline:
        sys.exit(f"fewer than {want} nodes alive")
    time.sleep(0.5)
"""


def _wait_for_nodes(address: str, env: dict[str, str], count: int) -> None:
    """Until the cluster has ``count`` live nodes (the study sizes itself by the nodes it
    finds at start, so a node still registering would take its trials elsewhere)."""
    subprocess.run([sys.executable, "-c", NODES_ALIVE, address, str(count)], env=env,
                   check=True, timeout=300, capture_output=True)  # fmt: skip


@pytest.fixture
def two_node_cluster(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A Ray head and a worker node on 127.0.0.1 with token authentication; stopped by
    process group (never `ray stop`, which would end other people's Ray instances)."""
    port = _free_port()
    node_log = tmp_path / "nodes"
    node_log.mkdir()
    token = os.urandom(16).hex()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "UGRO_TEST_NODE_LOG": str(node_log),
    }
    ray = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    processes = [subprocess.Popen([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                                   "--include-dashboard=false", *common], env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        processes.append(subprocess.Popen([ray, "start", f"--address=127.0.0.1:{port}", *common], env=env,
                                          start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        _wait_for_nodes(f"127.0.0.1:{port}", env, 2)
        yield f"127.0.0.1:{port}", node_log, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        time.sleep(3)
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.slow
def test_trials_run_on_both_nodes_of_an_existing_cluster(two_node_cluster, tmp_path: Path) -> None:
    address, node_log, auth = two_node_cluster
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | auth
    result = subprocess.run(
        [sys.executable, "-m", "ugro_hpo", "search_space=quadratic", "objective=custom",
         "objective.fn=fixture_objectives:where_am_i", "tracking=none", "n_trials=6", "parallel_jobs=2",
         "resources.cpu=1", f"ray.address={address}", "scheduler=fifo"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    nodes = {p.read_text() for p in node_log.iterdir()}
    assert len(nodes) == 2, nodes
    assert auth["RAY_AUTH_TOKEN"] not in result.stdout + result.stderr


@pytest.mark.slow
def test_two_drivers_share_one_postgres_study(
    postgres_url: str, tmp_path: Path, ray_address: str
) -> None:
    name = f"shared-{os.getpid()}-{time.time_ns()}"
    args = [*SLOW, f"study_name={name}", f"storage={postgres_url}", f"ray.address={ray_address}", "tracking=none",
            "parallel_jobs=1", "n_trials=8"]  # fmt: skip
    run_two_drivers(args, tmp_path)
    study = study_of(postgres_url, name)
    finished = [t for t in study.trials if outcome_of(t) in RAN]  # not the infeasible proposals
    assert len(finished) == 8
    assert len({t.number for t in finished}) == 8
    assert max(Counter(tuple(sorted(t.params.items())) for t in finished).values()) == 1
    drivers_seen = {t.user_attrs.get("driver") for t in finished}
    assert len(drivers_seen) == 2  # both drivers did part of the work
    optuna.delete_study(study_name=name, storage=postgres_url)


@pytest.mark.slow
def test_two_drivers_started_together_on_an_empty_database_both_run(
    postgres_url: str, tmp_path: Path, ray_address: str
) -> None:
    """Both create Optuna's schema at once (its enum type, its tables); the database refuses
    one of them, which tries again and finds the schema there. An empty schema of its own per
    attempt makes each start from nothing."""
    import sqlalchemy

    schema = f"race_{os.getpid()}"
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    args = ["objective=synthetic", "search_space=branin", "max_steps=2", "eval_every=1", "scheduler=fifo",
            "n_trials=6", "parallel_jobs=1", "study_name=race", f"storage='{url}'",
            f"ray.address={ray_address}", "tracking=none", "report=false"]  # fmt: skip
    try:
        run_two_drivers(args, tmp_path)
        study = study_of(url, "race")
        assert sum(outcome_of(t) in RAN for t in study.trials) == 6  # the budget, shared
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.mark.slow
def test_five_hundred_trials_each_present_once_everywhere(tmp_path: Path, ray_address: str) -> None:
    result = run_cli("objective=synthetic", "search_space=quadratic", "max_steps=2", "eval_every=1", "n_trials=500",
                     "parallel_jobs=8", "resources.cpu=0.25", "scheduler=fifo", "tracking=dual",
                     "wandb.project=load", "wandb.mode=offline", f"ray.address={ray_address}", "study_name=load",
                     cwd=tmp_path, timeout=3600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    study = study_of(f"sqlite:///{tmp_path / 'outputs' / 'studies.db'}", "load")
    numbers = [t.number for t in study.trials]
    assert (
        len(numbers) == len(set(numbers))
        and ran(tmp_path / "outputs" / "studies.db", "load") == 500
    )
    rows = (
        next((tmp_path / "outputs" / "load").glob("*/trials.csv"))
        .read_text()
        .strip()
        .splitlines()[1:]
    )
    assert sorted(int(r.split(",")[0]) for r in rows) == sorted(numbers)
    from wandb_records import read_runs

    wandb_numbers = [r.config["trial_number"] for r in read_runs(tmp_path / "outputs" / "wandb")]
    assert len(wandb_numbers) == len(set(wandb_numbers)) == len(numbers)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("ugro-hpo").experiment_id], max_results=5000
    )
    mlflow_numbers = [
        int(r.data.tags["ugro.trial_number"])
        for r in runs
        if r.data.tags.get("ugro.role") == "trial"
    ]
    assert sorted(mlflow_numbers) == sorted(numbers)
