"""Instruction and chat rows as token ids with a completion mask, truncated and labelled.

The completion is what the model should learn to write: the completion field of an
instruction row (followed by the end-of-sequence token, so the model learns to stop), or
every assistant message of a conversation as the model's chat template renders it (with the
template's end-of-turn text). With ``loss_on="completion"`` only those tokens carry loss;
with ``"all"`` every token does.

An example longer than ``seq_len`` is cut where it costs the completion least: the prompt
loses its start (a leading BOS token stays) as far as the whole completion needs; a completion
too long for the row even so keeps the end of its prompt (up to half the row) and loses its
own end. (In a conversation the prompt is what precedes the first assistant message.) An
example left with no completion token is dropped. Both are counted (`Counts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.lora.batches import IGNORE, Example

LOSS_ON = ("completion", "all")
TEMPLATES = ("alpaca",)
ROLES = ("system", "user", "assistant", "tool")

# The prompt format of the Stanford Alpaca data (instruction / input / output rows).
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_WITHOUT_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


@dataclass(frozen=True)
class Prompt:
    """A held-out example as a generation task: the prompt's ids and the expected completion."""

    input_ids: tuple[int, ...]
    reference: str


@dataclass
class Counts:
    """What tokenising a split did to its rows."""

    rows: int = 0
    truncated: int = 0
    dropped: int = 0

    def describe(self) -> str:
        return (f"{self.rows - self.dropped} examples ({self.truncated} truncated, "
                f"{self.dropped} dropped with no completion token left)")  # fmt: skip


@dataclass
class Tokenised:
    """A split's examples, each held-out example's generation prompt, and the counts."""

    examples: list[Example] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


def _text(row: Any, key: str, index: int, option: str, optional: bool = False) -> str:
    value = row.get(key) if isinstance(row, dict) else None
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise ConfigError(f"{option}: row {index} has {key!r} {found}, not text")
    return value


def instruction_pairs(
    rows: Sequence[Any], prompt_field: str, completion_field: str, template: str | None
) -> list[tuple[str, str]]:
    """(prompt, completion) text of each row; ``template="alpaca"`` reads instruction / input /
    output and writes Alpaca's prompt around them."""
    if template is None:
        return [(_text(r, prompt_field, i, "dataset.prompt_field"),
                 _text(r, completion_field, i, "dataset.completion_field"))
                for i, r in enumerate(rows)]  # fmt: skip
    pairs = []
    for i, row in enumerate(rows):
        instruction = _text(row, "instruction", i, "dataset.template=alpaca")
        given = _text(row, "input", i, "dataset.template=alpaca", optional=True)
        output = _text(row, "output", i, "dataset.template=alpaca")
        form = ALPACA_WITH_INPUT if given.strip() else ALPACA_WITHOUT_INPUT
        pairs.append((form.format(instruction=instruction, input=given), output))
    return pairs


def leading_special_ids(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a text of its own accord (BOS for Llama), never those it
    may put after it."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


def tokenise_pairs(
    pairs: Sequence[tuple[str, str]],
    tokenizer: Any,
    seq_len: int,
    loss_on: str,
    with_prompts: bool,
) -> Tokenised:
    """Instruction pairs as examples: the prompt (after any BOS), then the completion and EOS."""
    lead = leading_special_ids(tokenizer)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in pairs], add_special_tokens=False)["input_ids"]
    out = Tokenised(counts=Counts(rows=len(pairs)))
    for (_, reference), prompt, completion in zip(pairs, prompts, completions, strict=True):
        ids = [*lead, *prompt, *completion, *eos]
        mask = [False] * (len(lead) + len(prompt)) + [True] * (len(completion) + len(eos))
        if _keep(out, ids, mask, seq_len, loss_on, len(lead)) and with_prompts:
            out.prompts.append(_prompt([*lead, *prompt], reference, seq_len, len(lead)))
    return out


def tokenise_chats(
    conversations: Sequence[Any],
    tokenizer: Any,
    template: str | None,
    seq_len: int,
    loss_on: str,
    with_prompts: bool,
    field_name: str = "messages",
) -> Tokenised:
    """Conversations rendered with the chat template; assistant messages are the completion."""
    texts, spans = [], []
    for index, messages in enumerate(conversations):
        _check_messages(messages, index, field_name)
        text, assistant = _render_with_spans(tokenizer, messages, template)
        texts.append(text)
        spans.append(assistant)
    try:
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError) as exc:
        raise ConfigError(f"dataset=chat: the model's tokenizer cannot map tokens back to "
                          f"text ({exc}); use a fast tokenizer") from None  # fmt: skip
    bos = tokenizer.bos_token_id
    out = Tokenised(counts=Counts(rows=len(texts)))
    for messages, ids, offsets, assistant in zip(conversations, encoded["input_ids"],
                                                 encoded["offset_mapping"], spans, strict=True):  # fmt: skip
        mask = [any(a <= start < b for a, b in assistant) for start, _ in offsets]
        keep = 1 if ids and bos is not None and ids[0] == bos else 0
        if _keep(out, list(ids), mask, seq_len, loss_on, keep) and with_prompts:
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            before = _render(tokenizer, messages[:last], template, generation_prompt=True)
            prompt = tokenizer(before, add_special_tokens=False)["input_ids"]
            out.prompts.append(_prompt(prompt, messages[last]["content"], seq_len, keep))
    return out


def _check_messages(messages: Any, index: int, field_name: str) -> None:
    where = f"dataset.messages: row {index}"
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f"{where}: {field_name!r} must be a non-empty list of messages")
    for message in messages:
        if not isinstance(message, dict):
            raise ConfigError(f"{where}: a message is not a mapping with 'role' and 'content'")
        if message.get("role") not in ROLES:
            raise ConfigError(f"{where}: role {str(message.get('role'))[:40]!r} is not one of "
                              f"{list(ROLES)}")  # fmt: skip
        if not isinstance(message.get("content"), str):
            raise ConfigError(f"{where}: a {message['role']} message has no text 'content'")


def _render(tokenizer: Any, messages: list[Any], template: str | None,
            generation_prompt: bool) -> str:  # fmt: skip
    from jinja2 import TemplateError

    try:
        return str(tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
        ))  # fmt: skip
    except (TemplateError, ValueError, TypeError) as exc:
        raise ConfigError(f"dataset.chat_template: rendering a conversation failed "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None  # fmt: skip


def _render_with_spans(
    tokenizer: Any, messages: list[Any], template: str | None
) -> tuple[str, list[tuple[int, int]]]:
    """The whole conversation's text and, for each assistant message, the characters the
    template gives it: from the end of the conversation before it (with the generation prompt)
    to the end of the conversation up to it (its end-of-turn text included)."""
    text = _render(tokenizer, messages, template, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], template, generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], template, generation_prompt=False)
        if not (text.startswith(before) and text.startswith(upto)):
            raise ConfigError(
                "dataset.chat_template: the template does not render the start of a "
                "conversation as the start of the whole one, so its assistant tokens cannot be "
                "found; give a template that does with dataset.chat_template"
            )
        spans.append((len(before), len(upto)))
    return text, spans


def _keep(out: Tokenised, ids: list[int], mask: list[bool], seq_len: int, loss_on: str,
          keep: int) -> bool:  # fmt: skip
    """Truncate, label and append one example; False when it was dropped."""
    if len(ids) > seq_len:
        out.counts.truncated += 1
        first = mask.index(True) if True in mask else len(mask)
        prompt, room = max(first - keep, 0), seq_len - keep
        kept = max(room - (len(ids) - first), min(prompt, room // 2))
        cut = max(prompt - kept, 0)  # the prompt's start goes first
        ids = (ids[:keep] + ids[keep + cut :])[:seq_len]  # then the completion's end
        mask = (mask[:keep] + mask[keep + cut :])[:seq_len]
    if not any(mask[1:]):  # a completion token at position 0 predicts nothing either
        out.counts.dropped += 1
        return False
    labels = [t if m or loss_on == "all" else IGNORE for t, m in zip(ids, mask, strict=True)]
    out.examples.append(Example(tuple(ids), tuple(labels)))
    return True


def _prompt(ids: list[int], reference: str, seq_len: int, keep: int) -> Prompt:
    """A generation prompt no longer than ``seq_len - 1`` (its start cut, any BOS kept)."""
    room = max(seq_len - 1, keep + 1)
    if len(ids) > room:
        ids = ids[:keep] + ids[len(ids) - (room - keep) :]
    return Prompt(tuple(ids), reference)
