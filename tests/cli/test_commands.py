"""The command line: help, config display, dry runs, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import QUICK, UGRO_SPACES, run_cli

HEAVY = ("torch", "ray", "transformers", "peft", "mlflow", "wandb")
_PROBE = """
import json, runpy, sys
sys.argv = ["ugro_hpo", *json.loads(sys.argv[1])]
try:
    runpy.run_module("ugro_hpo", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("HEAVY=" + json.dumps([m for m in __MODULES__ if m in sys.modules]))
sys.exit(code)
""".replace("__MODULES__", repr(HEAVY))


def probe(args: list[str], cwd: Path):
    """Run the app in a fresh interpreter and report which heavy modules it imported."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    heavy = json.loads(result.stdout.rsplit("HEAVY=", 1)[1]) if "HEAVY=" in result.stdout else None
    return result, heavy


def test_help_lists_groups_and_options(tmp_path: Path) -> None:
    result, heavy = probe(["--help"], tmp_path)
    assert result.returncode == 0
    for line in ("search: auto, cmaes, gp, grid, multi_fidelity, nsga2, qmc, random, tpe", "scheduler: asha, auto, fifo, hyperband, median",
                 "objective: custom, lora, synthetic"):  # fmt: skip
        assert line in result.stdout
    assert heavy == []


def test_cfg_job_shows_the_composed_config_without_heavy_imports(tmp_path: Path) -> None:
    result, heavy = probe(["--cfg", "job", "search=random"], tmp_path)
    assert result.returncode == 0
    assert "_target_: optuna.samplers.RandomSampler" in result.stdout
    assert heavy == []
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("search", ["tpe", "random", "cmaes", "gp", "qmc", "nsga2"])
def test_dry_run_prints_the_plan_and_imports_nothing_heavy(tmp_path: Path, search: str) -> None:
    result, heavy = probe(["dry_run=true", f"search={search}"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Plan (dry run" in result.stdout
    assert "lora_r" in result.stdout and "LoraObjective" in result.stdout
    assert heavy == []
    assert not (tmp_path / "outputs").exists()


def test_dry_run_of_a_grid_search(tmp_path: Path) -> None:
    result, _ = probe(
        ["dry_run=true", "search=grid", "objective=synthetic", "search_space=quadratic"], tmp_path
    )
    assert result.returncode == 2
    assert "give float parameter 'x1' a 'step'" in result.stderr


BAD_SPACE = (
    "parameters:\n  lora_r: {type: int, min: 70, max: 64}\nobjectives: [{name: eval_loss}]\n"
)
INVALID = [
    (["n_trial=3"], "n_trial: not a key of the config (did you mean n_trials?)"),
    (["+n_trial=3"], "n_trial: not a key of the config (did you mean n_trials?)"),
    (["++ray.adress=x"], "ray.adress: not a key of the config (did you mean ray.address?)"),
    (["n_trials=many"], "could not be converted to Integer"),
    (["n_trials=0"], "n_trials: must be a whole number >= 1"),
    (["search=nope"], "Could not find 'search/nope'"),
    (["study_name=../escape"], "study_name: invalid name '../escape'"),
    (["study_name='has space'"], "study_name: invalid name"),
    (["search_space_file=BAD"], "min (70) is greater than max (64)"),
    (["search_space_file=missing.yaml"], "file not found"),
    (["objective=custom"], "objective.fn: missing value"),
    (["objective=custom", "objective.fn=no_such_module:f"], "cannot import 'no_such_module'"),
    (["objective=synthetic"], "objective.function: choose one of"),
    (["objective=synthetic", "objective.function=branin"], "does not understand parameter(s)"),
    (["eval_every=100", "max_steps=10"], "eval_every: 100 is larger than max_steps"),
    (["storage=redis://x"], "storage: 'redis://x' is not a database URL"),
    (["resources.cpu=-1"], "resources.cpu: must be a number >= 0"),
    (["resources.gpu=1.5"], "above 1, use whole numbers"),
    (["ray.address=not an address"], "ray.address"),
    (
        ["objective=synthetic", "search_space=binh_korn", "scheduler=asha"],
        "scheduler: asha (ray.tune.schedulers.ASHAScheduler) stops trials by one metric",
    ),
]


@pytest.mark.parametrize(("args", "message"), INVALID, ids=[" ".join(a) for a, _ in INVALID])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry_run"])
def test_invalid_input_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path, args: list[str], message: str, dry_run: bool
) -> None:
    bad = tmp_path / "bad_space.yaml"
    bad.write_text(BAD_SPACE)
    args = [a.replace("=BAD", f"={bad}") for a in args] + (["dry_run=true"] if dry_run else [])
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ugro_hpo: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_space.yaml"]


def test_ugro_sweep_translates_flags_into_overrides() -> None:
    from ugro_hpo.cli.ugro import _parser, sweep_overrides

    args = _parser().parse_args(
        ["hpo", "sweep", "--study-name", "s", "--search-space", str(UGRO_SPACES / "llama2_lora.yaml"),
         "--n-trials", "50", "--parallel-jobs", "4", "--wandb-project", "p", "--tracking-uri", "http://localhost:5000",
         "--model", "meta-llama/Llama-2-7b-hf", "--dataset", "wikitext", "--max-steps", "30", "--ray-address", "auto",
         "--storage", "sqlite:///x.db", "--export-best", "best.yaml", "--dry-run", "seed=3"]
    )  # fmt: skip
    overrides = sweep_overrides(args)
    assert "study_name='s'" in overrides
    assert (
        "n_trials=50" in overrides
        and "parallel_jobs=4" in overrides
        and "max_steps=30" in overrides
    )
    assert f"search_space_file='{UGRO_SPACES / 'llama2_lora.yaml'}'" in overrides
    assert "wandb.project='p'" in overrides and "tracking=dual" in overrides
    assert "mlflow.tracking_uri='http://localhost:5000'" in overrides
    assert "model=hf" in overrides and "model.name_or_path='meta-llama/Llama-2-7b-hf'" in overrides
    assert "dataset=wikitext" in overrides
    assert "ray.address='auto'" in overrides and "storage='sqlite:///x.db'" in overrides
    assert any(o.startswith("export_best=") and o.endswith("best.yaml'") for o in overrides)
    assert overrides[-2:] == ["dry_run=true", "seed=3"]


def test_ugro_sweep_model_option_names_stay_options() -> None:
    from ugro_hpo.cli.ugro import _parser, sweep_overrides

    overrides = sweep_overrides(
        _parser().parse_args(["hpo", "sweep", "--model", "llama2_7b", "--dataset", "my/hub-set"])
    )
    assert "model=llama2_7b" in overrides
    assert "dataset=hf" in overrides and "dataset.path='my/hub-set'" in overrides


@pytest.mark.slow
def test_ugro_sweep_runs_a_study_on_a_ugro_file(tmp_path: Path, ray_address: str) -> None:
    best = tmp_path / "exported.yaml"
    result = run_cli(
        "hpo", "sweep", "--study-name", "ugro-cli", "--search-space", str(UGRO_SPACES / "llama_lora_hpo.yaml"),
        "--n-trials", "3", "--parallel-jobs", "2", "--ray-address", ray_address, "--export-best", str(best),
        "objective=custom", "objective.fn=fixture_objectives:any_params", "tracking=none", "scheduler=fifo",
        cwd=tmp_path, module="ugro_hpo.cli",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = list((tmp_path / "outputs" / "ugro-cli").glob("*/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["finished"] == 3 and summary["status"] == "complete"
    assert best.read_text().startswith("# best trial")


@pytest.mark.slow
def test_a_study_command_exits_with_its_code_and_leaves_the_database_whole(
    tmp_path: Path, ray_address: str
) -> None:
    """The command skips Python's teardown at exit; the study's database must still be closed
    (SQLite folds its write-ahead log into the file), so the file alone holds every trial."""
    result = run_cli(
        *QUICK, "n_trials=3", f"ray.address={ray_address}", "study_name=whole", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Study whole: complete" in result.stdout  # everything printed reached the pipe
    db = tmp_path / "outputs" / "studies.db"
    assert not db.with_name("studies.db-wal").exists()
    with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as reader:  # the file, nothing else
        states = dict(reader.execute("select state, count(*) from trials group by state"))
    # the default scheduler may prune some; every trial must be stored as finished
    assert sum(states.values()) == 3 and set(states) <= {"COMPLETE", "PRUNED"}, states
    stopped = run_cli("objective=custom", "objective.fn=fixture_objectives:always_fails", "search_space=quadratic",
                      "tracking=none", "n_trials=2", "max_consecutive_failures=1", f"ray.address={ray_address}",
                      cwd=tmp_path)  # fmt: skip
    assert stopped.returncode == 3, stopped.stderr[-3000:]


@pytest.mark.slow
def test_multirun_gives_one_study_per_job(tmp_path: Path, ray_address: str) -> None:
    result = run_cli(
        "-m",
        *QUICK,
        "search=tpe,random",
        f"ray.address={ray_address}",
        "study_name=multi",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sorted((tmp_path / "outputs" / "multirun").glob("*/*/summary.json"))
    assert len(summaries) == 2
    contents = [json.loads(p.read_text()) for p in summaries]
    assert sorted(s["study_name"] for s in contents) == ["multi-search-random", "multi-search-tpe"]
    assert sorted(s["sampler"] for s in contents) == [
        "optuna.samplers.RandomSampler",
        "optuna.samplers.TPESampler",
    ]
    assert all(s["finished"] == 6 for s in contents)
    # At the end, the jobs side by side: printed, and as CSV and a page in the sweep directory.
    assert "Jobs of this multirun:" in result.stdout and "multi-search-tpe" in result.stdout
    sweep = summaries[0].parents[1]
    rows = (sweep / "comparison.csv").read_text().strip().splitlines()
    assert rows[0].startswith("job,study,status,objective,best") and len(rows) == 3
    assert "multi-search-random" in (sweep / "comparison.html").read_text()
    # six trials are within TPE's ten random ones: both jobs searched at random, and it says so
    assert "cannot tell the samplers apart" in result.stdout


def test_searchpath_adds_a_users_own_options(tmp_path: Path) -> None:
    own = tmp_path / "my_conf" / "search"
    own.mkdir(parents=True)
    (own / "my_tpe.yaml").write_text(
        "_target_: optuna.samplers.TPESampler\nseed: ${seed}\nn_startup_trials: 3\n"
    )
    result = run_cli(
        f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]",
        "search=my_tpe",
        "dry_run=true",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "sampler      optuna.samplers.TPESampler" in result.stdout


def test_an_experiment_preset_changes_the_whole_study(tmp_path: Path) -> None:
    result = run_cli("+experiment=synthetic_branin", "dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "study        synthetic-branin  (40 trials" in result.stdout
    assert "SyntheticObjective" in result.stdout


@pytest.mark.slow
def test_two_objectives_run_with_the_default_scheduler(tmp_path: Path, ray_address: str) -> None:
    """The README's multi-objective example: scheduler=auto gives FIFO, and a Pareto front."""
    result = run_cli(
        "objective=synthetic", "search_space=binh_korn", "max_steps=4", "eval_every=2", "n_trials=4",
        "tracking=none", f"ray.address={ray_address}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp_path / "outputs" / "ugro-demo").glob("*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["status"] == "complete" and summary["pareto_front"]
    assert summary["scheduler"] == "ray.tune.schedulers.FIFOScheduler"
