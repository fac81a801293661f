"""Whole SFT studies: chat, Alpaca and the offline Q&A set, their metrics in every record.
The Q&A study runs in the default suite; the others, whole studies too, with the slow ones."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli
from lora_support import untrained_tiny  # noqa: F401  (the `tiny` fixture)
from wandb_records import read_runs

SFT = FIXTURES / "sft"


@pytest.fixture
def tiny_overrides(tiny) -> list[str]:
    """The untrained tiny Llama of these tests (its folder is the model option's cache)."""
    return [f"model.cache_dir={tiny.path.parent}", "model.pretrain_steps=0", "tracking=none",
            "seed=42"]  # fmt: skip


def trials_csv(result) -> list[dict[str, str]]:
    with (Path(result.plan.run_dir) / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow  # a whole study; the data's handling has its unit tests (test_sft_data)
def test_a_chat_study_runs_on_a_jsonl_of_messages(study, tiny_overrides, tmp_path: Path) -> None:
    chats = tmp_path / "chats.jsonl"
    shutil.copy(SFT / "chats.jsonl", chats)
    result = study(*tiny_overrides, "dataset=chat", f"dataset.path={chats}", "n_trials=3",
                   "max_steps=4", "eval_every=2", "scheduler=fifo")  # fmt: skip
    assert result.summary["counts"]["complete"] == 3
    complete = [r for r in result.records if r.state == "complete"]
    assert all(0.0 <= r.metrics["eval_token_accuracy"] <= 1.0 for r in complete)
    assert all(
        float(row["eval_loss"]) > 0 for row in trials_csv(result) if row["state"] == "complete"
    )


@pytest.mark.slow  # a whole study; the data's handling has its unit tests (test_sft_data)
def test_an_alpaca_study_runs_and_its_loss_is_on_the_responses(study, tiny_overrides) -> None:
    common = [*tiny_overrides, "dataset=instruction", "dataset.template=alpaca",
              f"dataset.path={SFT / 'alpaca.jsonl'}", "n_trials=1", "max_steps=4", "eval_every=2",
              "scheduler=fifo"]  # fmt: skip
    completion = study(*common, "study_name=alpaca-completion")
    everything = study(*common, "study_name=alpaca-all", "dataset.loss_on=all")
    losses = [r.records[0].metrics["eval_loss"] for r in (completion, everything)]
    assert all(r.summary["counts"]["complete"] == 1 for r in (completion, everything))
    assert abs(losses[0] - losses[1]) > 0.01  # same data, same trial: another loss


def test_pydoc_qa_runs_offline_with_exact_match_as_an_objective_tracked_everywhere(
    study, tiny_overrides, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file and no network; eval_token_accuracy reaches trials.csv, MLflow and W&B, and a
    second objective maximises exact match."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    space = tmp_path / "space.yaml"
    space.write_text("parameters:\n  learning_rate: {type: float, min: 1.0e-4, max: 1.0e-3, log: true}\n"
                     "objectives:\n  - {name: eval_loss, direction: minimize}\n"
                     "  - {name: eval_exact_match, direction: maximize}\n")  # fmt: skip
    overrides = [o for o in tiny_overrides if o != "tracking=none"]
    result = study(*overrides, "dataset=pydoc_qa", "dataset.max_train_examples=64", "n_trials=2",
                   "max_steps=2", "eval_every=1", "objective.generate_eval_n=4",
                   "objective.generate_max_new_tokens=8", f"search_space_file={space}",
                   "study_name=qa", "tracking=dual", "wandb.mode=offline", "wandb.project=sft",
                   "scheduler=fifo")  # fmt: skip
    assert result.summary["counts"]["complete"] == 2
    assert result.summary["best"]  # a Pareto front over both objectives
    rows = trials_csv(result)
    assert all(0.0 <= float(r["eval_exact_match"]) <= 1.0 for r in rows)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")  # the default store
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`ugro.role` = 'trial'")  # fmt: skip
    assert len(runs) == 2
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "eval_token_accuracy")
        assert sorted(m.step for m in history) == [1, 2]
        assert all(0.0 <= m.value <= 1.0 for m in history)
    wandb_runs = read_runs(tmp_path / "outputs" / "wandb")
    assert len(wandb_runs) == 2
    for run in wandb_runs:
        assert len([row for row in run.history if "eval_token_accuracy" in row]) == 2
        assert 0.0 <= run.summary["final_eval_exact_match"] <= 1.0
    assert all(0.0 <= float(r["eval_token_accuracy"]) <= 1.0 for r in rows)


@pytest.mark.slow  # a whole study; the data's handling has its unit tests (test_sft_data)
def test_a_packed_study_trains(study, tiny_overrides) -> None:
    result = study(*tiny_overrides, "dataset=pydoc_qa", "dataset.packing=true",
                   "dataset.max_train_examples=128", "n_trials=1", "max_steps=2", "eval_every=2",
                   "scheduler=fifo")  # fmt: skip
    assert result.summary["counts"]["complete"] == 1


@pytest.mark.slow
def test_the_chat_command_line_runs(tiny, tmp_path: Path) -> None:
    shutil.copy(SFT / "chats.jsonl", tmp_path / "chats.jsonl")
    done = run_cli("dataset=chat", "dataset.path=chats.jsonl", "n_trials=3", "max_steps=4",
                   "eval_every=2", f"model.cache_dir={tiny.path.parent}", "model.pretrain_steps=0",
                   "tracking=none", "report=false", cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dataset chat:chats.jsonl: train" in done.stderr + done.stdout
