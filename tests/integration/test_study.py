"""Whole studies run in this process on the session's Ray: results, constraints, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import QUICK, UGRO_SPACES
from optuna.trial import TrialState

from ugro_hpo.errors import ConfigError
from ugro_hpo.space import load_search_space


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_a_study_writes_its_three_files(study) -> None:
    result = study(*QUICK)
    run_dir = result.run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_csv(run_dir / "trials.csv")
    best = yaml.safe_load((run_dir / "best_params.yaml").read_text())

    assert summary["status"] == "complete" and summary["n_trials"] == 6
    assert sum(summary["counts"].values()) == len(rows) == 6
    assert summary["finished"] == 6
    complete = [r for r in rows if r["state"] == "complete"]
    best_row = min(complete, key=lambda r: float(r["value"]))
    assert summary["best"]["trial"] == int(best_row["number"])
    assert best == summary["best"]["params"]
    assert set(rows[0]) >= {
        "number",
        "state",
        "x1",
        "x2",
        "value",
        "duration_s",
        "violation",
        "error",
    }
    assert (run_dir / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_defaults_are_the_first_trial(study) -> None:
    result = study(*QUICK)
    first = result.records[0]
    assert first.number == 0 and first.params == {"x1": 0.2, "x2": 0.9}


@pytest.mark.slow
def test_the_study_is_persisted_and_readable_by_optuna(study, tmp_path: Path) -> None:
    result = study(*QUICK, "study_name=persisted")
    loaded = optuna.load_study(study_name="persisted", storage=result.plan.storage)
    assert len(loaded.trials) == 6
    assert loaded.best_trial.number == result.summary["best"]["trial"]


@pytest.mark.slow
def test_sqlite_storage_writes_ahead_so_readers_never_wait(study) -> None:
    import sqlite3

    result = study(*QUICK, "study_name=wal")
    path = result.plan.storage.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.slow
def test_rerun_continues_up_to_n_trials(study) -> None:
    first = study(*QUICK, "study_name=resumed", "n_trials=4")
    second = study(*QUICK, "study_name=resumed", "n_trials=7")
    assert second.summary["finished"] == 7
    assert [r.params for r in second.records[:4]] == [r.params for r in first.records[:4]]
    third = study(*QUICK, "study_name=resumed", "n_trials=7")
    assert len(third.records) == len(second.records)  # nothing left to run


def test_a_changed_search_space_under_the_same_name_is_refused(study) -> None:
    study(*QUICK, "study_name=fixed", "n_trials=2")
    with pytest.raises(ConfigError, match="different search space"):
        study(*QUICK, "study_name=fixed", "search_space=branin", "objective.function=branin")


@pytest.mark.slow
def test_resume_false_archives_the_old_study(study) -> None:
    first = study(*QUICK, "study_name=fresh", "n_trials=2")
    second = study(*QUICK, "study_name=fresh", "n_trials=2", "resume=false")
    assert len(second.records) == 2
    names = {s.study_name for s in optuna.get_all_study_summaries(first.plan.storage)}
    assert "fresh" in names and any(n.startswith("fresh-archived-") for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_constraint_violations_cost_no_training_and_are_learned(
    study, tmp_path: Path, seed: int
) -> None:
    space = tmp_path / "tight.yaml"
    space.write_text(
        "parameters:\n  x1: {type: float, min: 0.0, max: 1.0}\n  x2: {type: float, min: 0.0, max: 1.0}\n"
        "constraints: ['x1 <= 0.8 and x2 <= 0.8']\nobjectives: [{name: value}]\nmetadata: {function: quadratic}\n"
    )
    result = study(
        *QUICK,
        f"search_space_file={space}",
        "n_trials=60",
        "max_steps=2",
        "scheduler=fifo",
        f"seed={seed}",
    )
    infeasible = [r for r in result.records if r.state == "infeasible"]
    assert infeasible, "a 36% infeasible space should give infeasible trials"
    for record in infeasible:
        assert record.violation == "x1 <= 0.8 and x2 <= 0.8"
        assert max(record.params["x1"], record.params["x2"]) > 0.8
        assert record.last_step == 0 and not record.metrics
    first, last = result.records[:20], result.records[40:]
    assert sum(r.state == "infeasible" for r in last) < sum(r.state == "infeasible" for r in first)
    # what other tools read from the stored study: only trials that ran have values
    stored = optuna.load_study(study_name=result.plan.study_name, storage=result.plan.storage)
    never_ran = {r.number for r in infeasible}
    assert stored.best_trial.number not in never_ran
    assert all(stored.trials[n].values is None for n in never_ran)
    ran = stored.get_trials(states=(TrialState.COMPLETE,))
    assert ran and not never_ran & {t.number for t in ran}
    rows = read_csv(result.run_dir / "trials.csv")
    assert {r["violation"] for r in rows if r["state"] == "infeasible"} == {
        "x1 <= 0.8 and x2 <= 0.8"
    }


@pytest.mark.slow
def test_asha_stops_poor_trials_early(study) -> None:
    result = study(*QUICK, "n_trials=12", "max_steps=8")
    pruned = [r for r in result.records if r.state == "pruned"]
    assert pruned
    assert all(r.last_step is not None and r.last_step < 8 for r in pruned)
    # The result ASHA stopped a trial on is kept: its value, metrics and learning curve.
    stored = optuna.load_study(study_name=result.plan.study_name, storage=result.plan.storage)
    for record in pruned:
        assert record.values["value"] is not None and "value" in record.metrics
        assert record.last_step in stored.trials[record.number].intermediate_values


@pytest.mark.slow
def test_several_objectives_give_a_pareto_front(study) -> None:
    result = study(
        *QUICK, "search_space=binh_korn", "n_trials=10", "search=nsga2", "scheduler=fifo"
    )
    front = result.summary["pareto_front"]
    assert front
    points = [(e["metrics"]["f1"], e["metrics"]["f2"]) for e in front]
    for a in points:
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in points)
    assert result.summary["best"]["trial"] in {e["trial"] for e in front}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama_lora_hpo", "llama2_lora", "llama_lora_hpo_conditional"])
def test_ugro_files_run_unchanged(study, name: str) -> None:
    path = UGRO_SPACES / f"{name}.yaml"
    result = study(f"search_space_file={path}", "objective=custom", "objective.fn=fixture_objectives:any_params",
                   "tracking=none", "n_trials=4", "max_steps=3", "eval_every=1")  # fmt: skip
    assert result.summary["finished"] == 4
    assert result.summary["best"] is not None


@pytest.mark.slow
def test_conditional_study_never_records_an_inactive_parameter(study) -> None:
    space = load_search_space(UGRO_SPACES / "llama_lora_hpo_conditional.yaml")
    result = study(f"search_space_file={UGRO_SPACES / 'llama_lora_hpo_conditional.yaml'}", "objective=custom",
                   "objective.fn=fixture_objectives:any_params", "tracking=none", "n_trials=16", "search=random")  # fmt: skip
    optimizers = set()
    for record in result.records:
        assert set(record.params) == space.active_names(record.params)
        optimizers.add(record.params["optimizer_type"])
    assert optimizers == {"adam", "adamw", "sgd"}


def test_a_study_whose_every_trial_fails_stops_after_the_streak(study) -> None:
    result = study("search_space=quadratic", "objective=custom", "objective.fn=fixture_objectives:always_fails",
                   "tracking=none", "n_trials=20", "max_consecutive_failures=4", "parallel_jobs=1")  # fmt: skip
    assert result.status == "stopped" and result.summary["status"] == "stopped"
    assert "the last 4 trials all failed" in result.summary["reason"]
    assert all(
        r.error == "ValueError: boom: this objective always fails" for r in result.records[:4]
    )
    # a trial started as the streak ended is stopped too, and queued to run again next time
    assert all(r.state in ("failed", "waiting") for r in result.records[4:])
    assert result.summary["best"] is None


def test_nan_metrics_fail_the_trial_with_the_reason(study) -> None:
    result = study(*QUICK, "objective.nan_prob=1.0", "n_trials=3", "scheduler=fifo", "max_consecutive_failures=3",
                   "parallel_jobs=1")  # fmt: skip
    assert [r.state for r in result.records[:3]] == ["failed"] * 3
    assert all("is nan" in (r.error or "") for r in result.records[:3])
    assert result.status == "stopped"


def test_a_custom_objective_may_return_one_number(study) -> None:
    result = study("search_space=quadratic", "objective=custom", "objective.fn=fixture_objectives:returns_number",
                   "tracking=none", "n_trials=3")  # fmt: skip
    assert result.summary["counts"]["complete"] == 3


SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
            "gp": "GPSampler", "qmc": "QMCSampler", "nsga2": "NSGAIISampler"}  # fmt: skip


@pytest.mark.parametrize(
    "search",
    # TPE (the samplers' common path) in the default suite; the others with the slow tests.
    [s if s == "tpe" else pytest.param(s, marks=pytest.mark.slow) for s in sorted(SAMPLERS)],
)
def test_every_sampler_runs_a_study(study, search: str) -> None:
    result = study(*QUICK, f"search={search}", "n_trials=4", "scheduler=fifo")
    assert result.summary["sampler"] == f"optuna.samplers.{SAMPLERS[search]}"
    assert result.summary["finished"] == 4


@pytest.mark.slow
def test_grid_search_ends_when_the_grid_is_exhausted(study, tmp_path: Path) -> None:
    """Every point once, the defaults' too (queued first, Optuna's grid would run it again),
    and the study is complete, saying why it ran fewer than n_trials."""
    space = tmp_path / "grid.yaml"
    space.write_text(
        "parameters:\n  x1: {type: float, min: 0.0, max: 1.0, step: 0.5, default: 0.5}\n"
        "  x2: {type: categorical, choices: [0.0, 1.0], default: 1.0}\n"
        "objectives: [{name: value}]\nmetadata: {function: quadratic}\n"
    )
    result = study(
        *QUICK,
        f"search_space_file={space}",
        "search=grid",
        "n_trials=20",
        "scheduler=fifo",
        "parallel_jobs=1",
    )
    points = {(r.params["x1"], r.params["x2"]) for r in result.records}
    assert len(points) == 6 == len(result.records)
    assert result.summary["status"] == "complete"
    assert result.summary["reason"] == "search=grid: all 6 points of the grid have run"


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["asha", "fifo", "hyperband", "median"])
def test_every_scheduler_runs_a_study(study, scheduler: str) -> None:
    result = study(*QUICK, f"scheduler={scheduler}", "n_trials=6")
    assert result.summary["finished"] == 6


@pytest.mark.slow
def test_export_best_writes_the_parameters_elsewhere(study, tmp_path: Path) -> None:
    target = tmp_path / "exported" / "best.yaml"
    result = study(*QUICK, f"export_best={target}")
    assert yaml.safe_load(target.read_text()) == result.summary["best"]["params"]


@pytest.mark.slow
def test_injected_failures_fail_their_trials_and_the_study_goes_on(study) -> None:
    result = study(*QUICK, "objective.fail_prob=0.5", "n_trials=8", "scheduler=fifo")
    failed = [r for r in result.records if r.state == "failed"]
    infeasible = [r for r in result.records if r.state == "infeasible"]  # never ran: not counted
    assert failed and result.summary["finished"] == 8 == len(result.records) - len(failed) - len(
        infeasible
    )
    assert all(
        (r.error or "").startswith("InjectedFault: injected failure at step") for r in failed
    )
    assert result.summary["counts"]["failed"] == len(failed)


def _min_distance_of_concurrent_asks(sampler, seed: int) -> float:
    import itertools
    import math

    from ugro_hpo.objectives.synthetic import branin

    study = optuna.create_study(sampler=sampler)
    for _ in range(20):
        trial = study.ask()
        x1, x2 = trial.suggest_float("x1", -5, 10), trial.suggest_float("x2", 0, 15)
        study.tell(trial, branin([x1, x2])[0])
    batch = []
    for _ in range(4):  # four trials running at once, none told yet
        trial = study.ask()
        batch.append(
            (trial.suggest_float("x1", -5, 10) / 15, trial.suggest_float("x2", 0, 15) / 15)
        )
    return min(math.dist(a, b) for a, b in itertools.combinations(batch, 2))


@pytest.mark.parametrize("search", ["tpe", pytest.param("auto", marks=pytest.mark.slow)])
def test_parallel_samplers_do_not_propose_near_duplicates(compose, search: str) -> None:
    from ugro_hpo.config.plan import build_plan, build_sampler

    distances = []
    for seed in range(8 if search == "tpe" else 3):  # auto on branin is a GP: slower per ask
        cfg = compose(*QUICK, "search_space=branin", f"search={search}", f"seed={seed}")
        plan = build_plan(cfg, "unused")
        assert plan.sampler_name.endswith("GPSampler" if search == "auto" else "TPESampler")
        distances.append(_min_distance_of_concurrent_asks(build_sampler(plan), seed))
    assert min(distances) > 0.05  # in units of the search range; without constant liar they crowd


def test_infeasible_proposals_start_no_ray_trial_and_n_trials_counts_trials_that_ran(
    study, tmp_path: Path
) -> None:
    space = tmp_path / "half.yaml"
    space.write_text(
        "parameters:\n  x1: {type: float, min: 0.0, max: 1.0}\n  x2: {type: float, min: 0.0, max: 1.0}\n"
        "constraints: ['x1 <= 0.5']\nobjectives: [{name: value}]\nmetadata: {function: quadratic}\n"
    )
    result = study(
        *QUICK, f"search_space_file={space}", "search=random", "n_trials=8", "scheduler=fifo"
    )
    counts = result.summary["counts"]
    assert counts["complete"] == 8 and counts["infeasible"] >= 2 and result.summary["finished"] == 8
    ray_trials = list(result.plan.ray_dir.glob("*/trial_*"))  # one directory per Ray trial
    assert len(ray_trials) == 8
