"""The LoRA objective: every knob reaches the model, optimiser or loop; real tiny studies."""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES
from lora_support import ALL_LINEAR, untrained_tiny  # noqa: F401  (the `tiny` fixture)

from ugro_hpo.errors import ConfigError
from ugro_hpo.lora.data import HubDataset, PydocTopics, TextFiles
from ugro_hpo.lora.models import PretrainedModel, TinyLlama
from ugro_hpo.lora.training import (
    Hyperparameters,
    TrainingRun,
    build_lr_scheduler,
    build_optimizer,
    lora_config,
    train,
)
from ugro_hpo.objectives.base import TrialContext
from ugro_hpo.objectives.lora import LoraObjective


@pytest.fixture(scope="module")
def blocks(tiny: TinyLlama):
    _, tokenizer = tiny.load("cpu")
    return PydocTopics(seq_len=32, max_train_chunks=64, max_eval_chunks=8, seed=0).blocks(tokenizer)


def peft_model(tiny: TinyLlama, **values):
    from peft import get_peft_model

    torch.manual_seed(0)
    base, _ = tiny.load("cpu")
    return get_peft_model(
        base, lora_config(Hyperparameters.from_values(values), tiny.target_modules)
    )


def lora_layers(model):
    return [
        m for m in model.modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})
    ]


# -- the knobs reach the adapter ----------------------------------------------------------------


def test_lora_r_sets_the_adapter_shapes(tiny) -> None:
    for r in (4, 12):
        layer = lora_layers(peft_model(tiny, lora_r=r))[0]
        assert layer.lora_A["default"].weight.shape[0] == r
        assert layer.lora_B["default"].weight.shape[1] == r


def test_lora_alpha_and_rslora_set_the_scaling(tiny) -> None:
    assert lora_layers(peft_model(tiny, lora_r=8, lora_alpha=32.0))[0].scaling[
        "default"
    ] == pytest.approx(4.0)
    rs = lora_layers(peft_model(tiny, lora_r=16, lora_alpha=32.0, use_rslora=True))[0]
    assert rs.scaling["default"] == pytest.approx(32.0 / math.sqrt(16))


def test_lora_dropout_sets_the_dropout(tiny) -> None:
    layer = lora_layers(peft_model(tiny, lora_dropout=0.25))[0]
    assert layer.lora_dropout["default"].p == pytest.approx(0.25)


def test_target_modules_choose_the_wrapped_layers(tiny) -> None:
    def wrapped(model) -> set[str]:
        return {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if hasattr(module, "lora_A")
        }

    assert wrapped(peft_model(tiny, target_modules="q_proj,v_proj")) == {"q_proj", "v_proj"}
    assert wrapped(peft_model(tiny)) == set(ALL_LINEAR)


def test_use_dora_adds_magnitude_vectors(tiny) -> None:
    names = [
        n
        for n, _ in peft_model(tiny, use_dora=True).named_parameters()
        if "lora_magnitude_vector" in n
    ]
    assert names
    assert not [n for n, _ in peft_model(tiny).named_parameters() if "lora_magnitude_vector" in n]


# -- the knobs reach the optimiser and schedule -----------------------------------------------


def test_optimizer_type_learning_rate_betas_momentum(tiny) -> None:
    model = peft_model(tiny)
    adamw = build_optimizer(
        model, Hyperparameters(optimizer_type="adamw", learning_rate=3e-4, beta1=0.8, beta2=0.95)
    )
    assert type(adamw) is torch.optim.AdamW
    assert adamw.param_groups[0]["lr"] == 3e-4 and adamw.param_groups[0]["betas"] == (0.8, 0.95)
    assert type(build_optimizer(model, Hyperparameters(optimizer_type="adam"))) is torch.optim.Adam
    sgd = build_optimizer(model, Hyperparameters(optimizer_type="sgd", momentum=0.7))
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.7


def test_weight_decay_goes_to_matrices_only(tiny) -> None:
    model = peft_model(tiny, use_dora=True)
    groups = build_optimizer(model, Hyperparameters(weight_decay=0.05)).param_groups
    assert groups[0]["weight_decay"] == 0.05 and all(p.ndim >= 2 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.ndim < 2 for p in groups[1]["params"])


def test_warmup_ratio_and_lr_scheduler_type_shape_the_learning_rate(tiny) -> None:
    def lrs(**values) -> list[float]:
        hp = Hyperparameters(learning_rate=1.0, **values)
        optimizer = build_optimizer(peft_model(tiny), hp)
        scheduler = build_lr_scheduler(optimizer, hp, max_steps=10)
        out = []
        for _ in range(10):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    assert lrs(warmup_ratio=0.0, lr_scheduler_type="constant") == [1.0] * 10
    warm = lrs(warmup_ratio=0.3, lr_scheduler_type="constant_with_warmup")
    assert warm[0] == 0.0 and warm[1] < warm[2] < warm[3] == 1.0
    cosine, linear = lrs(lr_scheduler_type="cosine"), lrs(lr_scheduler_type="linear")
    assert cosine[2] > linear[2] and cosine[0] == linear[0] == 1.0


# -- the knobs reach the loop -----------------------------------------------------------------


def run_training(tiny, blocks, steps=4, evaluation_steps=(2, 4), **values):
    model = peft_model(tiny)
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    reports: list[tuple[int, dict]] = []
    run = TrainingRun(
        data=blocks,
        max_steps=steps,
        evaluation_steps=list(evaluation_steps),
        seed=0,
        device="cpu",
    )
    metrics = train(
        model, Hyperparameters.from_values(values), run, lambda step, **m: reports.append((step, m))
    )
    hook.remove()
    return model, metrics, reports, shapes


def test_batch_size_and_gradient_accumulation_set_what_each_step_sees(tiny, blocks) -> None:
    _, _, _, shapes = run_training(
        tiny, blocks, steps=3, evaluation_steps=(3,), batch_size=5, gradient_accumulation_steps=2
    )
    train_shapes = [s for s in shapes if s[0] == 5]
    assert len(train_shapes) == 3 * 2  # three optimiser steps of two micro-batches of five
    assert blocks.stream(7, 0).next().inputs["input_ids"].shape == (7, 32)


def test_max_grad_norm_clips_the_update(tiny, blocks) -> None:
    def change(max_grad_norm):
        model, *_ = run_training(tiny, blocks, steps=1, evaluation_steps=(1,), optimizer_type="sgd",
                                 learning_rate=1.0, max_grad_norm=max_grad_norm)  # fmt: skip
        return sum(
            float(p.detach().abs().sum()) for n, p in model.named_parameters() if "lora_B" in n
        )

    assert change(1e-6) < 1e-4 < change(None)


def test_reports_eval_loss_perplexity_accuracy_and_train_loss_at_each_evaluation(
    tiny, blocks
) -> None:
    _, metrics, reports, _ = run_training(tiny, blocks, steps=4, evaluation_steps=(2, 4))
    assert [step for step, _ in reports] == [2, 4]
    for _, m in reports:
        assert set(m) == {"eval_loss", "eval_perplexity", "eval_token_accuracy", "train_loss"}
        assert 0.0 <= m["eval_token_accuracy"] <= 1.0
        assert m["eval_perplexity"] == pytest.approx(math.exp(m["eval_loss"]))
    assert metrics["eval_loss"] == min(m["eval_loss"] for _, m in reports)
    assert metrics["train_tokens_per_s"] > 0


def test_early_stopping_patience_stops_a_stalled_trial(tiny, blocks) -> None:
    _, _, reports, _ = run_training(tiny, blocks, steps=12, evaluation_steps=range(1, 13), learning_rate=1e-12,
                                    lora_dropout=0.0, early_stopping_patience=2)  # fmt: skip
    assert (
        len(reports) < 12
    )  # the eval loss cannot improve, so the trial stops after 1 + 2 evaluations
    _, _, reports, _ = run_training(
        tiny, blocks, steps=6, evaluation_steps=range(1, 7), learning_rate=1e-12, lora_dropout=0.0
    )
    assert len(reports) == 6


def test_unknown_and_invalid_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown LoRA hyperparameter"):
        Hyperparameters.from_values({"lora_rank": 8})
    with pytest.raises(ConfigError, match="optimizer_type"):
        Hyperparameters.from_values({"optimizer_type": "lion"})
    with pytest.raises(ConfigError, match="batch_size"):
        Hyperparameters.from_values({"batch_size": 0})


# -- the objective, data sources and hygiene --------------------------------------------------


def context(**changes) -> TrialContext:
    values = {
        "number": 0,
        "seed": 42,
        "max_steps": 4,
        "eval_every": 2,
        "metrics": ("eval_loss",),
        "resources": {"cpu": 1},
    }
    return TrialContext(**{**values, **changes})


def test_nothing_of_a_trial_outlives_it(tiny) -> None:
    from peft import PeftModel

    from ugro_hpo.execution.trainable import release_memory

    objective = LoraObjective(tiny, PydocTopics(seq_len=32, max_train_chunks=32, max_eval_chunks=4))
    for _ in range(2):
        objective({"lora_r": 4, "batch_size": 2}, lambda step, **m: None, context())
        release_memory()
        assert not [o for o in gc.get_objects() if isinstance(o, PeftModel)]


def test_save_adapter_keeps_only_the_best(tiny, tmp_path: Path) -> None:
    objective = LoraObjective(
        tiny,
        PydocTopics(seq_len=32, max_train_chunks=32, max_eval_chunks=4),
        save_adapter=True,
        keep_adapters=2,
    )
    for number, lr in enumerate([1e-6, 3e-3, 1e-3]):
        objective(
            {"learning_rate": lr, "batch_size": 2},
            lambda step, **m: None,
            context(number=number, run_dir=str(tmp_path)),
        )
    kept = sorted(p.name for p in (tmp_path / "adapters").glob("trial_*"))
    assert len(kept) == 2 and "trial_0" not in kept  # the tiny learning rate learned least
    assert (tmp_path / "adapters" / kept[0] / "adapter_config.json").is_file()


def test_text_files_and_saved_datasets_load_through_the_same_code(tiny, tmp_path: Path) -> None:
    import datasets

    _, tokenizer = tiny.load("cpu")
    text = tmp_path / "corpus.txt"
    text.write_text(
        "\n\n".join(
            f"Paragraph {i}: the quick brown fox jumps over the lazy dog." * 3 for i in range(40)
        )
    )
    files = TextFiles(paths=[str(text)], seq_len=16, seed=0).blocks(tokenizer)
    assert files.train.shape[1] == 16 and len(files.eval) > 0

    saved = tmp_path / "saved"
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict(
            {"text": [f"train text {i} about python" for i in range(200)]}
        ),
        validation=datasets.Dataset.from_dict({"text": [f"held out text {i}" for i in range(50)]}),
    ).save_to_disk(str(saved))
    hub = HubDataset(path=str(saved), seq_len=16, seed=0)
    train_docs, eval_docs = hub.split()
    assert train_docs[0] == "train text 0 about python" and eval_docs[0] == "held out text 0"
    assert len(hub.blocks(tokenizer).eval) > 0
    # Checked on the driver before any trial: a wrong column or path is one line.
    hub.check()
    with pytest.raises(ConfigError, match=r"dataset.text_field: 'body' not in columns \['text'\]"):
        HubDataset(path=str(saved), text_field="body").check()
    with pytest.raises(ConfigError, match=r"dataset.path: cannot load"):
        HubDataset(path=str(tmp_path / "no-such-dataset")).check()


def test_building_the_tiny_model_says_what_it_does_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A first run builds the model before any trial: it must not look hung."""
    from ugro_hpo.lora import tiny_build

    monkeypatch.setattr(
        tiny_build, "PROGRESS_EVERY_S", 0.0
    )  # a line per step instead of every 15 s
    small = TinyLlama(cache_dir=str(tmp_path), vocab_size=300, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=32, pretrain_steps=3, pretrain_seq_len=16,
                      pretrain_batch_size=2)  # fmt: skip
    with caplog.at_level("INFO", logger="ugro_hpo.lora"):
        small.prepare(gpu=0)
        small.prepare(gpu=0)  # built: found in the cache, says nothing
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith("building the tiny Llama once")
    assert said[1].startswith("tiny Llama: tokenizer trained on")
    assert [m.split(",")[0] for m in said[2:4]] == [
        "tiny Llama: pre-training step 1/3",
        "tiny Llama: pre-training step 2/3",
    ]
    assert said[4].startswith("built the tiny Llama") and len(said) == 5


def test_a_missing_hub_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.name_or_path: cannot load"):
        PretrainedModel(str(tmp_path / "no-model")).prepare(gpu=0)


def test_four_bit_needs_a_gpu() -> None:
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        PretrainedModel("some/model", quantization="4bit").prepare(gpu=0)
    with pytest.raises(ConfigError, match="is stored in 4 bits"):
        PretrainedModel("org/some-model-bnb-4bit").prepare(gpu=0)


def test_a_model_stored_quantised_needs_a_gpu(tiny: TinyLlama, tmp_path: Path) -> None:
    config = json.loads((tiny.path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"is stored quantised \(bitsandbytes\)"):
        PretrainedModel(str(tmp_path)).prepare(gpu=0)


def test_a_trial_given_a_gpu_it_cannot_see_fails_loudly() -> None:
    from ugro_hpo.objectives.lora import trial_device

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert trial_device({"cpu": 1, "gpu": 0}) == "cpu"
    with pytest.raises(
        RuntimeError, match=r"resources.gpu=0.5 but this worker sees no CUDA device"
    ):
        trial_device({"cpu": 1, "gpu": 0.5})


# -- whole studies ---------------------------------------------------------------------------


@pytest.mark.slow
def test_asha_stops_poor_lora_trials_early(study, lora_overrides) -> None:
    result = study(*lora_overrides, f"search_space_file={FIXTURES / 'tiny_lora.yaml'}", "n_trials=8", "max_steps=12",
                   "eval_every=3", "dataset.seq_len=64", "search=random")  # fmt: skip
    pruned = [r for r in result.records if r.state == "pruned"]
    assert pruned and all(r.last_step < 12 for r in pruned)
    complete = [r for r in result.records if r.state == "complete"]
    assert complete and all(
        set(r.metrics) >= {"eval_loss", "eval_perplexity", "train_loss"} for r in complete
    )


@pytest.mark.slow
def test_hf_model_from_a_local_directory_with_text_files(
    study, lora_overrides, tiny, tmp_path: Path
) -> None:
    local = tmp_path / "saved-model"
    model, tokenizer = tiny.load("cpu")
    model.save_pretrained(local)
    tokenizer.save_pretrained(local)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n\n".join(
            f"Note {i}: LoRA adapts a frozen model with low-rank updates." for i in range(200)
        )
    )
    result = study("model=hf", f"model.name_or_path={local}", "model.target_modules=[q_proj,v_proj]", "dataset=text_files",
                   f"dataset.paths=[{corpus}]", "dataset.seq_len=32", "tracking=none",
                   f"search_space_file={FIXTURES / 'tiny_lora.yaml'}", "n_trials=2", "max_steps=4", "eval_every=2", "scheduler=fifo")  # fmt: skip
    assert result.summary["counts"]["complete"] == 2


@pytest.mark.slow
def test_the_default_search_finds_clearly_better_than_default_and_worst(
    study, lora_overrides
) -> None:
    """The default study, smaller: the defaults first, then the default search; lower
    perplexity is better. Twelve trials, so the search has a fair chance to improve."""
    result = study(
        *lora_overrides, "n_trials=12", "max_steps=30", "scheduler=fifo", "dataset.seq_len=64"
    )
    complete = [r for r in result.records if r.state == "complete"]
    default = result.records[0]
    assert default.params["learning_rate"] == 5e-4 and default.state == "complete"
    ppl = {r.number: r.metrics["eval_perplexity"] for r in complete}
    best, worst = min(ppl.values()), max(ppl.values())
    assert best < 0.98 * ppl[default.number]
    assert best < 0.95 * worst


@pytest.mark.gpu
def test_lora_step_on_cuda(tiny) -> None:
    objective = LoraObjective(tiny, PydocTopics(seq_len=32, max_train_chunks=32, max_eval_chunks=4))
    metrics = objective(
        {"batch_size": 4}, lambda step, **m: None, context(resources={"cpu": 1, "gpu": 1})
    )
    assert math.isfinite(metrics["eval_loss"])


@pytest.mark.gpu
def test_four_bit_loading_on_cuda(tiny) -> None:
    pytest.importorskip("bitsandbytes", reason="needs the quant extra (bitsandbytes)")
    quantized = PretrainedModel(
        tiny.name_or_path,
        quantization="4bit",
        gradient_checkpointing=True,
        target_modules=ALL_LINEAR,
    )
    objective = LoraObjective(
        quantized, PydocTopics(seq_len=32, max_train_chunks=32, max_eval_chunks=4)
    )
    metrics = objective(
        {"batch_size": 4}, lambda step, **m: None, context(resources={"cpu": 1, "gpu": 1})
    )
    assert math.isfinite(metrics["eval_loss"])


@pytest.mark.gpu
def test_two_trials_share_one_gpu(study, lora_overrides) -> None:
    result = study(*lora_overrides, f"search_space_file={FIXTURES / 'tiny_lora.yaml'}", "n_trials=2", "parallel_jobs=2",
                   "resources.gpu=0.5", "max_steps=40", "eval_every=20", "scheduler=fifo")  # fmt: skip
    import optuna

    trials = optuna.load_study(study_name="ugro-demo", storage=result.plan.storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(r.metrics.get("gpu_memory_peak_mb", 0) > 0 for r in result.records)  # on the GPU
    first, second = trials
    assert (
        first.datetime_start < second.datetime_complete
        and second.datetime_start < first.datetime_complete
    )
