"""The rung view: what an early-stopping study did at each rung, checked against the trials the
storage holds, and the steps it trained against what FIFO would have."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.rung_steps import as_text, from_text, milestones

ASHA = "ray.tune.schedulers.ASHAScheduler"


def test_milestones_are_the_scheduler_s_rungs() -> None:
    asha = {"_target_": ASHA, "grace_period": 1, "reduction_factor": 2, "max_t": 6}
    assert milestones(asha, 6) == [1, 2, 4, 6]
    assert milestones({**asha, "grace_period": 3, "reduction_factor": 3, "max_t": 60}, 60) == [
        3, 9, 27, 60,
    ]  # fmt: skip
    assert milestones({"_target_": "ray.tune.schedulers.FIFOScheduler"}, 6) == []
    assert from_text(as_text([1, 2, 4, 6])) == [1, 2, 4, 6]


@pytest.mark.parametrize("stored", ["1 x", "4 2", "0 1", "-1 3", "9" * 12, 7, ["1"], "1 1"])
def test_rungs_read_back_from_a_hostile_storage_are_checked(stored: Any) -> None:
    assert from_text(stored) == []


def test_the_rung_view_counts_what_the_stored_trials_did(study: Any) -> None:
    result = study("objective=synthetic", "search_space=branin", "max_steps=8", "eval_every=1",
                   "tracking=none", "n_trials=10", "parallel_jobs=2", "scheduler=asha",
                   "scheduler.grace_period=1", "scheduler.reduction_factor=2", "report=true")  # fmt: skip
    summary = result.summary
    rungs = summary["rungs"]
    assert [r["step"] for r in rungs] == [1, 2, 4, 8]

    stored = optuna.load_study(study_name=summary["study_name"], storage=result.plan.storage)
    ran = [t for t in stored.trials if p.outcome_of(t) in p.RAN]
    last = {t.number: t.user_attrs[p.TRIAL_LAST_STEP] for t in ran}
    pruned = {t.number for t in ran if p.outcome_of(t) == p.Outcome.PRUNED}
    assert pruned, "ASHA stopped no trial: the view would show nothing"
    for i, rung in enumerate(rungs):
        upper = rungs[i + 1]["step"] if i + 1 < len(rungs) else float("inf")
        reached = {n for n, step in last.items() if step >= rung["step"]}
        assert rung["reached"] == len(reached)
        assert rung["stopped"] == len({n for n in reached & pruned if last[n] < upper})
        assert rung["promoted"] == len({n for n in reached if last[n] >= upper})
    # Every trial that ran reached the first rung; each ends at one rung or runs to the last.
    assert rungs[0]["reached"] == len(ran)
    assert sum(r["stopped"] for r in rungs) + rungs[-1]["reached"] - rungs[-1]["stopped"] == len(
        ran
    )
    assert summary["steps_trained"] == sum(last.values())
    assert summary["steps_fifo"] == 8 * len(ran) > summary["steps_trained"]

    # `ugro hpo analyze` rebuilds the same view from the storage alone.
    import json

    from ugro_hpo.cli.stored_commands import analyze

    out = analyze(summary["study_name"], result.plan.storage, result.run_dir / "analysis")
    again = json.loads((out / "summary.json").read_text())
    assert (again["rungs"], again["steps_trained"]) == (rungs, summary["steps_trained"])

    page = (result.run_dir / "report" / "index.html").read_text()
    assert "<h2>Multi-fidelity</h2>" in page and "trials reached" in page
    assert f"Steps trained: {summary['steps_trained']} of the {summary['steps_fifo']}" in page


def test_a_study_without_rungs_says_the_steps_only(study: Any) -> None:
    result = study("objective=synthetic", "search_space=branin", "max_steps=3", "eval_every=1",
                   "tracking=none", "n_trials=2", "scheduler=fifo")  # fmt: skip
    assert "rungs" not in result.summary
    assert result.summary["steps_trained"] == result.summary["steps_fifo"] == 6
