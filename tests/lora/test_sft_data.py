"""Instruction and chat data: where the loss is, truncation, batching, packing, sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES
from lora_support import untrained_tiny  # noqa: F401  (the `tiny` fixture)

from ugro_hpo.errors import ConfigError
from ugro_hpo.lora.batches import IGNORE, Example, LengthGroupedStream, padded_batch
from ugro_hpo.lora.packing import check_packing, pack, packing_problem
from ugro_hpo.lora.sft_data import ChatSource, InstructionSource, PydocQA

SFT = FIXTURES / "sft"


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny.tokenizer()


def conversations() -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in (SFT / "chats.jsonl").read_text().splitlines()]


def labelled(ids: list[int], labels: list[int]) -> list[int]:
    return [t for t, label in zip(ids, labels, strict=True) if label != IGNORE]


def rows_of(batch) -> list[tuple[list[int], list[int]]]:
    """Each row's real tokens and labels (padding left out by the attention mask)."""
    out = []
    for row in range(batch.inputs["input_ids"].shape[0]):
        keep = batch.inputs["attention_mask"][row].bool()
        out.append((batch.inputs["input_ids"][row][keep].tolist(),
                    batch.inputs["labels"][row][keep].tolist()))  # fmt: skip
    return out


# -- where the loss is --------------------------------------------------------------------------


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_chat_batches_label_only_assistant_tokens(tiny, tokenizer, packing: bool) -> None:
    """On the real batches a trial trains on: every system, user and template token has label
    -100; every assistant token (its text and the template's end of turn) has its own id."""
    source = ChatSource(path=str(SFT / "chats.jsonl"), seq_len=256, packing=packing, seed=0)
    stream = source.batches(tokenizer).stream(8, seed=0)
    by_text = {tokenizer.apply_chat_template(c, tokenize=False): c for c in conversations()}
    seen = 0
    for _ in range(6):
        batch = stream.next()
        if packing:
            assert "attention_mask" not in batch.inputs and "position_ids" in batch.inputs
            segments = _packed_segments(batch)
        else:
            segments = rows_of(batch)
        for ids, labels in segments:
            messages = by_text[tokenizer.decode(ids)]
            assert all(label in (IGNORE, t) for t, label in zip(ids, labels, strict=True))
            spoken = tokenizer.decode(labelled(ids, labels))
            expected = "".join(
                f"{m['content']}</s>\n" for m in messages if m["role"] == "assistant"
            )
            assert spoken == expected
            silent = tokenizer.decode(
                [t for t, lab in zip(ids, labels, strict=True) if lab == IGNORE]
            )
            for message in messages:
                if message["role"] != "assistant":
                    assert message["content"] in silent and message["content"] not in spoken
            seen += 1
    assert seen >= 48  # more than one epoch of the file's conversations


def _packed_segments(batch) -> list[tuple[list[int], list[int]]]:
    """The examples of packed rows (a segment starts where the position ids restart), without
    each row's padding segment."""
    out = []
    for row in range(batch.inputs["input_ids"].shape[0]):
        ids = batch.inputs["input_ids"][row].tolist()
        labels = batch.inputs["labels"][row].tolist()
        starts = [i for i, p in enumerate(batch.inputs["position_ids"][row].tolist()) if p == 0]
        for a, b in zip(starts, [*starts[1:], len(ids)], strict=True):
            if any(label != IGNORE for label in labels[a:b]):  # not the padding segment
                out.append((ids[a:b], labels[a:b]))
    return out


def test_alpaca_rows_label_only_the_response_and_its_eos(tokenizer) -> None:
    source = InstructionSource(path=str(SFT / "alpaca.jsonl"), template="alpaca", seq_len=256)
    data = source.batches(tokenizer)
    rows = [json.loads(line) for line in (SFT / "alpaca.jsonl").read_text().splitlines()]
    outputs = {r["output"] for r in rows}
    for example in data.train:
        spoken = tokenizer.decode(labelled(list(example.input_ids), list(example.labels)))
        assert spoken.endswith("</s>") and spoken.removesuffix("</s>") in outputs
        prompt = tokenizer.decode([t for t, lab in zip(example.input_ids, example.labels, strict=True)
                                   if lab == IGNORE])  # fmt: skip
        assert prompt.startswith("Below is an instruction") and prompt.endswith("### Response:\n")
    with_input = next(r for r in rows if r["input"])
    text = tokenizer.decode(next(e for e in data.train + data.eval
                                 if with_input["input"] in tokenizer.decode(e.input_ids)).input_ids)  # fmt: skip
    assert "### Input:\n" + with_input["input"] in text


def test_loss_on_all_labels_every_token(tokenizer) -> None:
    source = InstructionSource(path=str(SFT / "alpaca.jsonl"), template="alpaca", loss_on="all")
    for example in source.batches(tokenizer).train:
        assert list(example.labels) == list(example.input_ids)
    with pytest.raises(ConfigError, match=r"dataset.loss_on: 'prompt' is not one of"):
        InstructionSource(path="x.jsonl", loss_on="prompt")


def test_prompt_and_completion_fields_are_named_by_the_options(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"q": f"Say {i}.", "a": f"{i}"}) + "\n" for i in range(20)))
    data = InstructionSource(path=str(path), prompt_field="q", completion_field="a").batches(
        tokenizer
    )
    assert tokenizer.decode(
        labelled(list(data.train[0].input_ids), list(data.train[0].labels))
    ) in {f"{i}</s>" for i in range(20)}
    with pytest.raises(ConfigError, match=r"dataset.prompt_field: row 0 has 'prompt' missing"):
        InstructionSource(path=str(path)).check()


# -- truncation and dropped examples ------------------------------------------------------------


def test_a_long_example_loses_its_prompt_start_then_its_completion_end(tokenizer, tmp_path) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    rows = [{"prompt": f"START {words} END:", "completion": " the answer"},  # long prompt
            {"prompt": "Q:", "completion": f" {words}"},  # completion alone too long
            {"prompt": "Q:", "completion": " short"}]  # fmt: skip
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    source = InstructionSource(path=str(path), seq_len=32, eval_fraction=0.25, seed=0)
    data = source.batches(tokenizer)
    assert data.counts["train"].truncated + data.counts["eval"].truncated == 8
    assert data.counts["train"].dropped == data.counts["eval"].dropped == 0
    for example in data.train + data.eval:
        assert len(example) <= 32
        text = tokenizer.decode(example.input_ids)
        if "END:" in text:  # the prompt was cut from its start; the completion is whole
            assert "START" not in text and text.endswith("END: the answer</s>")
        elif "w0" in text:  # the completion keeps its start, after the whole prompt
            assert text.startswith("Q: w0 w1") and "</s>" not in text
    assert "8 examples" not in data.describe() and "truncated" in data.describe()


def test_an_example_without_a_completion_token_is_dropped_and_counted(tokenizer, tmp_path) -> None:
    chats = [[{"role": "user", "content": f"hello {i}"}] for i in range(4)]  # no assistant
    chats += [[{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "yes"}]
              for i in range(16)]  # fmt: skip
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats))
    data = ChatSource(path=str(path), seq_len=64, eval_fraction=0.2, seed=0).batches(tokenizer)
    assert data.counts["train"].dropped + data.counts["eval"].dropped == 4
    assert len(data.train) + len(data.eval) == 16 and all(e.targets > 0 for e in data.train)
    # Nothing left to evaluate is an error naming the counts, never a NaN eval loss.
    only_users = tmp_path / "users.jsonl"
    only_users.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats[:4]))
    with pytest.raises(ConfigError, match=r"no train example has a completion token left.*dropped"):
        ChatSource(path=str(only_users), seed=0).batches(tokenizer)


# -- batches ------------------------------------------------------------------------------------


def test_length_grouped_batches_pad_far_less_than_random_ones() -> None:
    lengths = [4 + (i * 37) % 120 for i in range(512)]
    examples = [Example(tuple([5] * n), tuple([5] * n)) for n in lengths]
    stream = LengthGroupedStream(examples, batch_size=8, seed=0, pad_id=0)
    grouped = [stream.next() for _ in range(64)]
    assert all(b.inputs["input_ids"].shape[0] == 8 for b in grouped)
    generator = torch.Generator().manual_seed(0)
    shuffled = [padded_batch([examples[i] for i in torch.randperm(512, generator=generator)[:8]], 0)
                for _ in range(64)]  # fmt: skip

    def padding(batches) -> float:
        return 1 - sum(b.tokens for b in batches) / sum(
            b.inputs["input_ids"].numel() for b in batches
        )

    assert padding(grouped) < 0.1 < 0.3 < padding(shuffled)
    again = LengthGroupedStream(examples, batch_size=8, seed=0, pad_id=0)
    assert all(
        torch.equal(again.next().inputs["input_ids"], b.inputs["input_ids"]) for b in grouped
    )


def test_packed_rows_hold_every_example_once_with_positions_reset() -> None:
    examples = [Example(tuple(range(1, n + 1)), tuple(range(1, n + 1))) for n in (9, 3, 7, 5, 2, 8)]
    rows, tokens = pack(examples, seq_len=12, pad_id=0)
    assert rows["input_ids"].shape == (len(rows["input_ids"]), 12) and len(rows["input_ids"]) == 3
    assert int(tokens.sum()) == sum(len(e) for e in examples)
    found = []
    for r in range(len(rows["input_ids"])):
        positions = rows["position_ids"][r].tolist()
        starts = [i for i, p in enumerate(positions) if p == 0]
        for a, b in zip(starts, [*starts[1:], 12], strict=True):
            if a < int(tokens[r]):
                found.append(b - a)
                assert positions[a:b] == list(range(b - a))
                assert rows["labels"][r][a] == IGNORE  # no token predicted across the boundary
        assert (rows["labels"][r][int(tokens[r]) :] == IGNORE).all()  # the padding segment
    assert sorted(found) == sorted(len(e) for e in examples)


def test_a_packed_row_gives_each_example_the_logits_it_gets_alone(tiny, tokenizer) -> None:
    """Packing trains with no attention across examples: the model's logits for each example
    of a packed row are those of the example run alone."""
    model, _ = tiny.load("cpu")
    model.eval()
    source = ChatSource(path=str(SFT / "chats.jsonl"), seq_len=256, packing=True, seed=0)
    batch = source.batches(tokenizer).stream(2, seed=0).next()
    checked = 0
    with torch.no_grad():
        packed = model(input_ids=batch.inputs["input_ids"],
                       position_ids=batch.inputs["position_ids"]).logits  # fmt: skip
        for row in range(2):
            positions = batch.inputs["position_ids"][row].tolist()
            starts = [i for i, p in enumerate(positions) if p == 0]
            assert len(starts) >= 3  # two examples or more, and the padding segment
            for a, b in zip(starts, [*starts[1:], len(positions)], strict=True):
                alone = model(input_ids=batch.inputs["input_ids"][row : row + 1, a:b]).logits[0]
                torch.testing.assert_close(packed[row, a:b], alone, atol=1e-4, rtol=1e-4)
                checked += 1
        # Without the reset positions the same row does mix its examples.
        mixed = model(input_ids=batch.inputs["input_ids"][row : row + 1]).logits[0]
        second = slice(starts[1], starts[2])
        assert (mixed[second] - packed[row, second]).abs().max() > 0.1
    assert checked >= 6


def test_packing_is_refused_in_one_line_where_the_model_cannot_keep_examples_apart(tiny) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, JambaConfig, MambaConfig, OPTConfig

    assert packing_problem(AutoConfig.from_pretrained(tiny.path)) is None  # Llama
    no_mask = packing_problem(MambaConfig(hidden_size=16, num_hidden_layers=1))
    assert no_mask and "does not build its attention mask from position ids" in no_mask
    hybrid = packing_problem(JambaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         num_key_value_heads=1, attn_layer_period=2, attn_layer_offset=1))  # fmt: skip
    from transformers.models.jamba import modeling_jamba

    if hasattr(modeling_jamba, "create_causal_mask"):  # transformers 5: masks from position ids
        assert (
            hybrid and "layers, whose state would carry one packed example into the next" in hybrid
        )
    else:  # transformers 4: refused before its layers are looked at
        assert hybrid and "does not build its attention mask from position ids" in hybrid
    model, tokenizer = tiny.load("cpu")
    check_packing(model, "cpu", len(tokenizer))  # the tiny Llama passes the worker's check
    # OPT passes the driver's check (on transformers 5) but computes its positions from the
    # attention mask, so the worker's check on the loaded model refuses it (on any version).
    from transformers.models.opt import modeling_opt

    opt_config = OPTConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           ffn_dim=64, word_embed_proj_dim=32)  # fmt: skip
    if hasattr(modeling_opt, "create_causal_mask"):
        assert packing_problem(opt_config) is None
    else:
        assert "does not build its attention mask" in (packing_problem(opt_config) or "")
    opt = AutoModelForCausalLM.from_config(opt_config)
    with pytest.raises(
        ConfigError, match=r"dataset.packing=true: this model lets packed examples see"
    ):
        check_packing(opt, "cpu", 300)


# -- sources and templates ----------------------------------------------------------------------


def test_rows_load_from_jsonl_json_saved_folders_and_dataset_folders(tokenizer, tmp_path) -> None:
    import datasets

    rows = [json.loads(line) for line in (SFT / "alpaca.jsonl").read_text().splitlines()]
    as_json = tmp_path / "alpaca.json"
    as_json.write_text(json.dumps(rows))
    saved = tmp_path / "saved"
    datasets.DatasetDict(train=datasets.Dataset.from_list(rows[:40]),
                         validation=datasets.Dataset.from_list(rows[40:])).save_to_disk(str(saved))  # fmt: skip
    copy = tmp_path / "hub-copy"  # the files of a hub dataset, as `load_dataset` reads them
    copy.mkdir()
    (copy / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:40]))
    (copy / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[40:]))
    for path in (SFT / "alpaca.jsonl", as_json, saved, copy):
        source = InstructionSource(path=str(path), template="alpaca", eval_fraction=0.2, seed=0)
        train, held_out = source.rows()
        assert len(train) + len(held_out) == 48 and held_out, path
        if path in (saved, copy):  # their own validation split is used
            assert held_out == rows[40:]
        assert len(source.batches(tokenizer).eval) == len(held_out)
    for missing in (tmp_path / "none.jsonl", tmp_path / "no-such-folder"):
        with pytest.raises(ConfigError, match=r"dataset.path: (file not found|cannot load)"):
            InstructionSource(path=str(missing)).check()


def test_the_chat_template_option_supplies_a_template(tiny, tmp_path: Path) -> None:
    from ugro_hpo.lora.models import PretrainedModel

    bare = PretrainedModel(tiny.name_or_path).tokenizer()  # the saved tokenizer has none
    chats = str(SFT / "chats.jsonl")
    with pytest.raises(
        ConfigError, match=r"dataset.chat_template: the tokenizer of .* has no chat"
    ):
        ChatSource(path=chats).batches(bare)
    from_file = ChatSource(path=chats, chat_template=str(SFT / "chat_template.jinja")).batches(bare)
    assert bare.decode(from_file.train[0].input_ids).startswith("### ")
    inline = ChatSource(path=chats, chat_template="{% for m in messages %}[{{ m['role'] }}] "
                        "{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}[assistant] "
                        "{% endif %}").batches(bare)  # fmt: skip
    assert bare.decode(inline.train[0].input_ids).startswith("[")
    with pytest.raises(ConfigError, match=r"is neither a Jinja template nor a file"):
        ChatSource(path=chats, chat_template=str(tmp_path / "missing.jinja")).check()


def test_pydoc_qa_is_built_offline_the_same_every_time(tokenizer) -> None:
    first, second = PydocQA(seed=3), PydocQA(seed=3)
    train, held_out = first.rows()
    assert len(train) > 500 and len(held_out) > 50
    assert (train, held_out) == second.rows()
    assert PydocQA(seed=4).rows()[1] != held_out  # the seed chooses the held-out questions
    prompt, answer = train[0]
    assert prompt.startswith("### Question:\nWhat does the ") and len(answer) >= 20
    data = first.batches(tokenizer)
    assert data.prompts[0].reference == held_out[0][1]


@pytest.mark.gpu
def test_a_packed_row_keeps_its_examples_apart_on_cuda(tiny, tokenizer) -> None:
    """The same on the GPU's attention kernels, under the trial's autocast."""
    from ugro_hpo.lora.models import half_dtype

    model, _ = tiny.load("cuda")
    model.eval()
    check_packing(model, "cuda", len(tokenizer))
    source = ChatSource(path=str(SFT / "chats.jsonl"), seq_len=256, packing=True, seed=0)
    batch = source.batches(tokenizer).stream(1, seed=0).next()
    inputs = batch.to("cuda")
    with torch.no_grad(), torch.autocast(device_type="cuda", dtype=half_dtype()):
        packed = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"]).logits
        starts = [i for i, p in enumerate(inputs["position_ids"][0].tolist()) if p == 0]
        a, b = starts[1], starts[2]
        alone = model(input_ids=inputs["input_ids"][:, a:b]).logits
    torch.testing.assert_close(packed[:, a:b].float(), alone.float(), atol=0.05, rtol=0.05)
