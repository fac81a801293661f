"""SFT through the objective: loss_on, generation metrics, LoRA+, the SFT search spaces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, REPO, run_cli
from lora_support import ALL_LINEAR, CHAT_TEMPLATE, untrained_tiny  # noqa: F401  (`tiny`)

from ugro_hpo.errors import ConfigError
from ugro_hpo.lora.generation import exact_match, generate, generation_metrics, token_f1
from ugro_hpo.lora.sft_data import ChatSource, InstructionSource, PydocQA
from ugro_hpo.lora.training import Hyperparameters, build_optimizer, lora_config
from ugro_hpo.objectives.base import TrialContext
from ugro_hpo.objectives.lora import LoraObjective
from ugro_hpo.space.parsing import load_search_space

SFT = FIXTURES / "sft"
SPACES = REPO / "conf" / "search_space"


def context(**changes) -> TrialContext:
    values = {"number": 0, "seed": 42, "max_steps": 2, "eval_every": 2, "metrics": ("eval_loss",),
              "resources": {"cpu": 1}}  # fmt: skip
    return TrialContext(**{**values, **changes})


def trial(objective: LoraObjective, **params) -> tuple[dict, list[dict]]:
    reports: list[dict] = []
    metrics = objective({"batch_size": 4, **params}, lambda step, **m: reports.append(m), context())
    return metrics, reports


def alpaca(**options) -> InstructionSource:
    return InstructionSource(path=str(SFT / "alpaca.jsonl"), template="alpaca", seq_len=128,
                             eval_fraction=0.2, seed=0, **options)  # fmt: skip


def test_loss_on_all_gives_another_eval_loss_on_the_same_data(tiny) -> None:
    completion, _ = trial(LoraObjective(tiny, alpaca()))
    everything, _ = trial(LoraObjective(tiny, alpaca(loss_on="all")))
    assert math.isfinite(completion["eval_loss"]) and math.isfinite(everything["eval_loss"])
    assert abs(completion["eval_loss"] - everything["eval_loss"]) > 0.01
    assert alpaca().rows() == alpaca(loss_on="all").rows()  # the same rows, other labels


def test_every_evaluation_reports_token_accuracy_on_completion_tokens(tiny) -> None:
    metrics, reports = trial(LoraObjective(tiny, ChatSource(path=str(SFT / "chats.jsonl"))))
    assert reports and all(0.0 <= r["eval_token_accuracy"] <= 1.0 for r in reports)
    assert metrics["eval_token_accuracy"] == reports[-1]["eval_token_accuracy"]


def test_generate_eval_n_reports_exact_match_and_token_f1(tiny) -> None:
    objective = LoraObjective(tiny, alpaca(), generate_eval_n=4, generate_max_new_tokens=8)
    assert objective.reports_every_metric is False  # reported once, at the end
    metrics, reports = trial(objective)
    assert 0.0 <= metrics["eval_exact_match"] <= 1.0 and 0.0 <= metrics["eval_token_f1"] <= 1.0
    assert all("eval_exact_match" not in r for r in reports)


def test_exact_match_is_one_when_the_greedy_completion_is_the_reference(tiny) -> None:
    model, tokenizer = tiny.load("cpu")
    prompts = PydocQA(seed=0).batches(tokenizer).prompts[:5]
    written = generate(model, tokenizer, prompts, "cpu", max_new_tokens=6)
    alone = [generate(model, tokenizer, [p], "cpu", max_new_tokens=6)[0] for p in prompts]
    assert written == alone  # left padding in a batch changes nothing
    from dataclasses import replace

    as_written = [
        replace(p, reference=w.upper() + " ") for p, w in zip(prompts, written, strict=True)
    ]
    scores = generation_metrics(model, tokenizer, as_written, "cpu", max_new_tokens=6)
    assert scores == {"eval_exact_match": 1.0, "eval_token_f1": 1.0}


@pytest.mark.parametrize(
    ("prediction", "reference", "em", "f1"),
    [("Return the sum.", "return  the sum", 1.0, 1.0),
     ("Return the total sum", "Return the sum", 0.0, 2 * 0.75 * 1.0 / 1.75),
     ("nothing alike", "Return the sum", 0.0, 0.0),
     ("", "", 1.0, 1.0),
     ("", "x", 0.0, 0.0)],
)  # fmt: skip
def test_exact_match_and_token_f1(prediction, reference, em, f1) -> None:
    assert exact_match(prediction, reference) == em
    assert token_f1(prediction, reference) == pytest.approx(f1)


def test_generation_metrics_need_completions_and_generate_eval_n(tiny, tmp_path: Path) -> None:
    from ugro_hpo.lora.data import PydocTopics

    with pytest.raises(
        ConfigError, match=r"objective.generate_eval_n: dataset pydoc_topics has no"
    ):
        LoraObjective(tiny, PydocTopics(), generate_eval_n=4)
    space = tmp_path / "space.yaml"
    space.write_text("parameters: {learning_rate: {type: float, min: 1.0e-4, max: 1.0e-3}}\n"
                     "objectives: [{name: eval_loss}, {name: eval_exact_match, direction: maximize}]\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"set objective.generate_eval_n=N"):
        LoraObjective(tiny, alpaca()).check(load_search_space(space))
    LoraObjective(tiny, alpaca(), generate_eval_n=2).check(load_search_space(space))


# -- LoRA knobs ---------------------------------------------------------------------------------


def test_loraplus_lr_ratio_gives_the_b_matrices_a_higher_learning_rate(tiny) -> None:
    from peft import get_peft_model

    base, _ = tiny.load("cpu")
    model = get_peft_model(base, lora_config(Hyperparameters(), tiny.target_modules))
    optimizer = build_optimizer(model, Hyperparameters(learning_rate=1e-4, loraplus_lr_ratio=16.0,
                                                       weight_decay=0.01))  # fmt: skip
    by_name = {id(p): n for n, p in model.named_parameters()}
    rates = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            rates[by_name[id(parameter)]] = group["lr"]
    a_rates = {r for n, r in rates.items() if "lora_A" in n}
    b_rates = {r for n, r in rates.items() if "lora_B" in n}
    assert a_rates == {1e-4} and [pytest.approx(1.6e-3)] == list(b_rates)
    assert type(optimizer) is torch.optim.AdamW
    plain = build_optimizer(model, Hyperparameters(learning_rate=1e-4))
    assert {g["lr"] for g in plain.param_groups} == {1e-4}
    with pytest.raises(ConfigError, match=r"loraplus_lr_ratio: a number >= 1"):
        Hyperparameters.from_values({"loraplus_lr_ratio": 0.5})


def test_all_linear_is_a_default_space_choice_and_wraps_every_linear_layer(tiny) -> None:
    from peft import get_peft_model

    space = load_search_space(SPACES / "lora.yaml")
    choice = next(p for p in space.parameters if p.name == "target_modules")
    assert "all-linear" in choice.choices and choice.default == "all-linear"
    hp = Hyperparameters.from_values({"target_modules": "all-linear"})
    base, _ = tiny.load("cpu")
    model = get_peft_model(base, lora_config(hp, None))
    wrapped = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(ALL_LINEAR)  # every linear layer but the output head


def test_the_sft_space_is_understood_and_says_why_for_every_range(tiny) -> None:
    space = load_search_space(SPACES / "lora_sft.yaml")
    LoraObjective(tiny, alpaca()).check(space)  # every parameter is one the objective has
    assert {"learning_rate", "lora_r", "lora_alpha", "use_rslora", "loraplus_lr_ratio",
            "lora_dropout", "warmup_ratio"} <= set(space.names)  # fmt: skip
    assert space.metadata["target_modules"] == "all-linear"
    learning_rate = next(p for p in space.parameters if p.name == "learning_rate")
    assert learning_rate.log and learning_rate.low <= 1e-5 and learning_rate.high >= 1e-3
    lines = (SPACES / "lora_sft.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  ") and ": {type:" in line:
            assert lines[i - 1].strip().startswith("#"), f"no comment says why: {line.strip()}"


# -- what a stored study may rebuild ------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [["dataset=pydoc_qa", "objective.generate_eval_n=4"],
     ["dataset=instruction", "dataset.path=a.jsonl", "dataset.template=alpaca"],
     ["dataset=chat", "dataset.path=c.jsonl", "dataset.chat_template=t.jinja", "dataset.packing=true"]],
)  # fmt: skip
def test_a_stored_sft_study_passes_the_allow_list(overrides: list[str], tmp_path: Path) -> None:
    from ugro_hpo.config import compose
    from ugro_hpo.config.plan import resolve
    from ugro_hpo.security.stored_objective import build_objective, check_objective

    config = json.loads(json.dumps(resolve(compose(*overrides, f"outputs_dir={tmp_path}"))))
    checked = check_objective(config)
    assert checked["dataset"]["_target_"] == config["objective"]["dataset"]["_target_"]
    rebuilt = build_objective(checked, outputs_dir=tmp_path)
    assert type(rebuilt.dataset).__name__ == config["dataset"]["_target_"].rsplit(".", 1)[1]


@pytest.mark.gpu
def test_a_packed_chat_trial_on_cuda_in_four_bits(tiny) -> None:
    pytest.importorskip("bitsandbytes", reason="needs the quant extra (bitsandbytes)")
    from ugro_hpo.lora.models import PretrainedModel

    quantized = PretrainedModel(tiny.name_or_path, quantization="4bit", gradient_checkpointing=True,
                                target_modules=ALL_LINEAR, chat_template=CHAT_TEMPLATE)  # fmt: skip
    chats = ChatSource(path=str(SFT / "chats.jsonl"), packing=True, eval_fraction=0.2, seed=0)
    objective = LoraObjective(quantized, chats, generate_eval_n=4, generate_max_new_tokens=8)
    objective.prepare({"gpu": 1})
    metrics = objective({"batch_size": 4, "loraplus_lr_ratio": 16.0}, lambda step, **m: None,
                        context(resources={"cpu": 1, "gpu": 1}))  # fmt: skip
    assert math.isfinite(metrics["eval_loss"]) and 0.0 <= metrics["eval_exact_match"] <= 1.0
    assert metrics["gpu_memory_peak_mb"] > 0


def test_packing_a_model_that_cannot_pack_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    from transformers import MambaConfig

    MambaConfig(hidden_size=16, num_hidden_layers=1).save_pretrained(tmp_path / "mamba")
    done = run_cli("model=hf", f"model.name_or_path={tmp_path / 'mamba'}", "dataset=pydoc_qa",
                   "dataset.packing=true", "tracking=none", f"outputs_dir={tmp_path / 'out'}",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ugro_hpo: error: dataset.packing=true: the 'mamba' model does not build its attention "
        f"mask from position ids, so packed examples would attend to each other (model "
        f"{tmp_path / 'mamba'}); set dataset.packing=false to pad instead"
    ]
    assert not (tmp_path / "out").exists()
