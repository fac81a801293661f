"""Reading a study back into records (counts, ranking, the Pareto front) and writing its files:
atomically, without following planted links, with metric names that cannot add YAML keys."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState, create_trial

from ugro_hpo.optimize import protocol as p
from ugro_hpo.results.records import counts, pareto_front, ranked, trial_records
from ugro_hpo.results.writers import best_params_text, write_atomic, write_json, write_trials_csv
from ugro_hpo.space import parse_search_space

D = {"x": optuna.distributions.FloatDistribution(0, 1)}
ONE = parse_search_space(
    yaml.safe_load("parameters: {x: {type: float, min: 0, max: 1}}\nobjectives: [{name: loss}]"),
    "one",
)
TWO = parse_search_space(yaml.safe_load(
    "parameters: {x: {type: float, min: 0, max: 1}}\n"
    "objectives: [{name: a}, {name: b, direction: maximize, weight: 2}]"), "two")  # fmt: skip


def _study(space, rows):  # type: ignore[no-untyped-def]
    study = optuna.create_study(directions=[o.direction for o in space.objectives])
    for x, state, values, attrs in rows:
        study.add_trial(create_trial(state=state, values=values, params={"x": x}, distributions=D,
                                     user_attrs=attrs, intermediate_values={1: 5.0} if state == TrialState.PRUNED else None))  # fmt: skip
    return study


def test_records_counts_and_the_best_trial() -> None:
    study = _study(ONE, [
        (0.1, TrialState.COMPLETE, [2.0], {p.TRIAL_METRICS: {"loss": 2.0, "ppl": 7.4}}),
        (0.2, TrialState.COMPLETE, [0.5], {}),
        (0.9, TrialState.COMPLETE, [0.0], {p.TRIAL_STATE: "infeasible", p.TRIAL_VIOLATION: "x < 0.5"}),
        (0.3, TrialState.PRUNED, None, {}),
        (0.4, TrialState.FAIL, None, {p.TRIAL_ERROR: "boom"}),
    ])  # fmt: skip
    records = trial_records(study, ONE)
    assert counts(records) == {
        "complete": 2,
        "pruned": 1,
        "infeasible": 1,
        "failed": 1,
        "running": 0,
        "waiting": 0,
    }
    infeasible = records[2]
    assert (
        infeasible.values == {"loss": None} and infeasible.violation == "x < 0.5"
    )  # a stand-in is not a value
    assert records[3].values == {"loss": 5.0}  # a pruned trial's last intermediate value
    assert [r.number for r in ranked(records, ONE)] == [1, 0]  # the infeasible 0.0 is never best
    assert records[0].metrics["ppl"] == 7.4 and records[4].error == "boom"


def test_the_pareto_front_and_its_weighted_best() -> None:
    study = _study(TWO, [(0.1, TrialState.COMPLETE, [1.0, 1.0], {}), (0.2, TrialState.COMPLETE, [2.0, 3.0], {}),
                         (0.3, TrialState.COMPLETE, [3.0, 2.0], {})])  # fmt: skip
    records = trial_records(study, TWO)
    assert [r.number for r in pareto_front(records, TWO)] == [0, 1]  # 2 is dominated by 1
    assert [r.number for r in ranked(records, TWO)] == [1, 0, 2]  # 2 - 2*3 < 1 - 2*1


def test_files_are_written_whole_and_planted_links_are_replaced(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    out = tmp_path / "run" / "summary.json"
    out.parent.mkdir()
    out.symlink_to(target)
    write_atomic(out, '{"token": "abc123"}')
    assert target.read_text() == "precious" and not out.is_symlink()
    assert out.read_text() == '{"token": "***"}'  # and scrubbed
    assert [p.name for p in out.parent.iterdir()] == ["summary.json"]  # no temporary left
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_best_params_are_yaml_a_metric_name_cannot_add_keys_to() -> None:
    summary = {"study_name": "s", "best": {"trial": 3, "params": {"lr": 0.1, "opt": "adam"},
                                           "metrics": {"loss\nevil: 1": 0.5}}}  # fmt: skip
    text = best_params_text(summary)
    assert yaml.safe_load(text) == {"lr": 0.1, "opt": "adam"} and text.startswith(
        "# best trial 3 of study s"
    )


def test_trials_csv_has_a_row_per_trial_and_no_secret_column_values(tmp_path: Path) -> None:
    study = _study(
        ONE,
        [(0.1, TrialState.COMPLETE, [1.0], {p.TRIAL_METRICS: {"loss": 1.0, "api_token": 42.0}})],
    )
    write_trials_csv(tmp_path, trial_records(study, ONE), ONE)
    (row,) = csv.DictReader((tmp_path / "trials.csv").open())
    assert row["state"] == "complete" and row["loss"] == "1.0" and row["api_token"] == "***"


def test_a_multirun_comparison_has_one_row_per_job_in_job_order(tmp_path: Path) -> None:
    import json

    from ugro_hpo.results.comparison import write_comparison

    for job, best in (("10", 0.5), ("2", 0.25), ("0", None)):
        (tmp_path / job).mkdir()
        summary = {"study_name": f"s-{job}", "status": "complete", "duration_s": 1.5,
                   "objectives": [{"name": "loss", "direction": "minimize"}],
                   "counts": {"complete": 3, "pruned": 1, "failed": 0},
                   "best": None if best is None else {"metrics": {"loss": best}}}  # fmt: skip
        (tmp_path / job / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "3").mkdir()  # a job that wrote nothing is left out
    table = write_comparison(tmp_path)
    rows = (tmp_path / "comparison.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "2", "10"]
    assert rows[0].endswith("complete,pruned,infeasible,failed,duration_s")
    assert rows[2] == "2,s-2,complete,loss (minimize),0.25,3,1,0,0,1.5"
    assert "s-10" in table and "<td>s-10</td>" in (tmp_path / "comparison.html").read_text()
    assert write_comparison(tmp_path / "3") == ""  # no jobs: nothing written


def _job(sweep: Path, job: str, sampler_startup: str, losses: list[float | None]) -> None:
    """A job directory as a finished study leaves it: summary.json, trials.csv, report/."""
    import json

    (sweep / job / "report").mkdir(parents=True)
    (sweep / job / "report" / "index.html").write_text("<html></html>")
    states = ["complete" if v is not None else "infeasible" for v in losses]
    summary = {"study_name": f"s-{job}", "status": "complete", "finished": states.count("complete"),
               "objectives": [{"name": "loss", "direction": "minimize"}],
               "counts": {"complete": states.count("complete"), "infeasible": states.count("infeasible")},
               "best": {"metrics": {"loss": min(v for v in losses if v is not None)}},
               "sampler_startup_trials": sampler_startup}  # fmt: skip
    (sweep / job / "summary.json").write_text(json.dumps(summary))
    lines = ["number,state,x,loss"] + [f"{i},{s},0.5,{'' if v is None else v}"
                                       for i, (s, v) in enumerate(zip(states, losses, strict=True))]  # fmt: skip
    (sweep / job / "trials.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(("n", "varying", "warned"), [
    (6, {"search"}, True),            # shorter than TPE's 10 random start-up trials
    (12, {"search"}, False),          # long enough to tell the samplers apart
    (6, {"search_space"}, False),     # the jobs differ in more than the sampler
])  # fmt: skip
def test_a_comparison_says_when_it_cannot_tell_samplers_apart(
    tmp_path: Path, n: int, varying: set[str], warned: bool
) -> None:
    from ugro_hpo.results.comparison import write_comparison

    _job(tmp_path, "0", "10", [1.0 - i / 100 for i in range(n)])
    _job(tmp_path, "1", "", [1.0 - i / 50 for i in range(n)])  # random search: no start-up
    table = write_comparison(tmp_path, varying)
    page = (tmp_path / "comparison.html").read_text()
    assert ("cannot tell the samplers apart" in table) is warned
    assert ("cannot tell the samplers apart" in page) is warned


def test_a_comparison_page_overlays_best_so_far_and_links_each_report(tmp_path: Path) -> None:
    from ugro_hpo.results.comparison import best_so_far, write_comparison

    _job(tmp_path, "0", "10", [0.9, None, 0.7, 0.8, 0.5])
    _job(tmp_path, "1", "10", [0.6, 0.65, None, 0.4])
    write_comparison(tmp_path, {"search"})
    page = (tmp_path / "comparison.html").read_text()
    assert page.count('<a href="0/report/index.html">') == 1
    assert page.count('<a href="1/report/index.html">') == 1
    assert 'src="data:image/png;base64,' in page and "<th>infeasible</th>" in page
    assert best_so_far(tmp_path / "0", "loss", minimize=True) == [
        (0, 0.9),
        (2, 0.7),
        (3, 0.7),
        (4, 0.5),
    ]


def test_json_files_stay_json_when_a_secret_named_number_is_masked(tmp_path: Path) -> None:
    path = tmp_path / "final_metrics.json"
    write_json(path, {"metrics": {"eval_loss": 1.5, "api_token": 123456789}, "trial": 3})
    data = json.loads(path.read_text())
    assert data["metrics"]["eval_loss"] == 1.5 and data["trial"] == 3
    assert data["metrics"]["api_token"] != 123456789 and "123456789" not in path.read_text()
