"""Instruction and chat data sources (`dataset=instruction`, `dataset=chat`, `dataset=pydoc_qa`).

Rows come from a hub id, a ``save_to_disk`` folder or a local ``.jsonl`` / ``.json`` file
(`ugro_hpo.lora.rows`) and are tokenised with the trial model's tokenizer into examples whose
labels carry loss on the completion only, or on everything (`ugro_hpo.lora.sft_formats`).
Training batches are padded in length-grouped batches, or packed (``packing=true``).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.lora.batches import Batch, Example
from ugro_hpo.lora.data import DataSource
from ugro_hpo.lora.sft_formats import LOSS_ON, TEMPLATES, Counts, Prompt, Tokenised
from ugro_hpo.validation import whole_number

log = logging.getLogger(__name__)


@dataclass
class SftBatches:
    """Tokenised examples of both splits, batched padded or packed."""

    train: list[Example]
    eval: list[Example]
    prompts: list[Prompt]  # the held-out examples as generation tasks
    pad_id: int
    seq_len: int
    packing: bool
    counts: dict[str, Counts] = field(default_factory=dict)
    _eval: list[Batch] | None = None
    _packed: Any = None

    def stream(self, batch_size: int, seed: int) -> Any:
        from ugro_hpo.lora.batches import BlockStream, LengthGroupedStream

        if not self.packing:
            return LengthGroupedStream(self.train, batch_size, seed, self.pad_id)
        if self._packed is None:
            from ugro_hpo.lora.packing import pack

            self._packed = pack(self.train, self.seq_len, self.pad_id)
        rows, tokens = self._packed
        return BlockStream(rows, batch_size, seed, tokens)

    def eval_batches(self) -> list[Batch]:
        """Padded in either case: the same eval loss with packing and without."""
        from ugro_hpo.lora.batches import eval_batches

        if self._eval is None:
            self._eval = eval_batches(self.eval, self.pad_id)
        return self._eval

    def describe(self) -> str:
        return "; ".join(f"{split} {c.describe()}" for split, c in self.counts.items())


class SftSource(DataSource):
    """Rows with a completion to learn; subclasses say where the rows come from and how a row
    becomes tokens."""

    supervised = True

    def __init__(
        self,
        seq_len: int = 512,
        eval_fraction: float = 0.05,
        loss_on: str = "completion",
        packing: bool = False,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = 256,
        seed: int = 0,
    ) -> None:
        if seq_len < 8:
            raise ConfigError(f"dataset.seq_len: must be at least 8, got {seq_len}")
        if not 0.0 < eval_fraction < 1.0:
            raise ConfigError(
                f"dataset.eval_fraction: must be between 0 and 1, got {eval_fraction}"
            )
        if loss_on not in LOSS_ON:
            raise ConfigError(f"dataset.loss_on: {loss_on!r} is not one of {list(LOSS_ON)}")
        if not isinstance(packing, bool):
            raise ConfigError(f"dataset.packing: true or false, got {packing!r}")
        for key, value in (("max_train_examples", max_train_examples),
                           ("max_eval_examples", max_eval_examples)):  # fmt: skip
            if value is not None:
                whole_number(value, f"dataset.{key}", 1, hint=" or null")
        self.seq_len = int(seq_len)
        self.eval_fraction = float(eval_fraction)
        self.loss_on = loss_on
        self.packing = packing
        self.max_train_examples = max_train_examples
        self.max_eval_examples = max_eval_examples
        self.seed = int(seed)
        self._rows: tuple[list[Any], list[Any]] | None = None
        self._cache: dict[str, SftBatches] = {}

    @abstractmethod
    def load_rows(self) -> tuple[list[Any], list[Any]]:
        """Train and eval rows, before any limit."""

    @abstractmethod
    def tokenise(self, rows: list[Any], tokenizer: Any, with_prompts: bool) -> Tokenised:
        """Rows as labelled examples (and, for held-out rows, generation prompts)."""

    def rows(self) -> tuple[list[Any], list[Any]]:
        """Train and eval rows, limited to ``max_train_examples`` / ``max_eval_examples``."""
        if self._rows is None:
            train, held_out = self.load_rows()
            self._rows = (train[: self.max_train_examples], held_out[: self.max_eval_examples])
        return self._rows

    def check(self) -> None:
        self.rows()

    def batches(self, tokenizer: Any) -> SftBatches:
        """Tokenised examples (cached per tokenizer in this process); an empty split is an
        error naming the counts, never a NaN loss."""
        key = f"{getattr(tokenizer, 'name_or_path', '')}:{len(tokenizer)}"
        if key not in self._cache:
            train_rows, eval_rows = self.rows()
            train = self.tokenise(train_rows, tokenizer, with_prompts=False)
            held_out = self.tokenise(eval_rows, tokenizer, with_prompts=True)
            for split, part in (("train", train), ("eval", held_out)):
                if not part.examples:
                    raise ConfigError(
                        f"dataset {self.name}: no {split} example has a completion token left "
                        f"within dataset.seq_len={self.seq_len} ({part.counts.describe()})"
                    )
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            self._cache[key] = SftBatches(train.examples, held_out.examples, held_out.prompts,
                                          pad, self.seq_len, self.packing,
                                          {"train": train.counts, "eval": held_out.counts})  # fmt: skip
        return self._cache[key]


class RowSource(SftSource):
    """Rows from a hub id, a ``save_to_disk`` folder, or a local ``.jsonl`` / ``.json`` file."""

    def __init__(
        self,
        path: str,
        name: str | None = None,
        train_split: str = "train",
        eval_split: str | None = "validation",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not path:
            raise ConfigError(
                "dataset.path: give a .jsonl/.json file, a folder saved with save_to_disk, or "
                "a hub dataset id"
            )
        self.path = str(path)
        self.config_name = name
        self.train_split = train_split
        self.eval_split = eval_split

    def load_rows(self) -> tuple[list[Any], list[Any]]:
        from ugro_hpo.lora.rows import load, split_rows

        loaded = load(self.path, self.config_name)
        return split_rows(loaded, self.train_split, self.eval_split, self.eval_fraction, self.seed)


class InstructionSource(RowSource):
    """Prompt / completion rows, or Alpaca's instruction / input / output with
    ``template="alpaca"``."""

    def __init__(
        self,
        path: str,
        prompt_field: str = "prompt",
        completion_field: str = "completion",
        template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, **kwargs)
        if template is not None and template not in TEMPLATES:
            raise ConfigError(
                f"dataset.template: {template!r} is not one of {list(TEMPLATES)} (or null)"
            )
        self.prompt_field = prompt_field
        self.completion_field = completion_field
        self.template = template
        self.name = f"instruction:{Path(self.path).name}"

    def check(self) -> None:
        from ugro_hpo.lora.sft_formats import instruction_pairs

        for rows in self.rows():  # a missing field is one line before any trial
            instruction_pairs(rows, self.prompt_field, self.completion_field, self.template)

    def tokenise(self, rows: list[Any], tokenizer: Any, with_prompts: bool) -> Tokenised:
        from ugro_hpo.lora.sft_formats import instruction_pairs, tokenise_pairs

        pairs = instruction_pairs(rows, self.prompt_field, self.completion_field, self.template)
        return tokenise_pairs(pairs, tokenizer, self.seq_len, self.loss_on, with_prompts)


class ChatSource(RowSource):
    """Rows holding a conversation (a list of role / content messages), rendered with the
    model's chat template, or ``chat_template`` (a Jinja string or a file holding one)."""

    def __init__(
        self,
        path: str,
        messages: str = "messages",
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, **kwargs)
        self.messages = messages
        self.chat_template = chat_template
        self.name = f"chat:{Path(self.path).name}"

    def check(self) -> None:
        for rows in self.rows():
            for index, row in enumerate(rows):
                if not isinstance(row, dict) or self.messages not in row:
                    keys = sorted(row)[:10] if isinstance(row, dict) else type(row).__name__
                    raise ConfigError(
                        f"dataset.messages: row {index} has no {self.messages!r} field ({keys})"
                    )
        self.template()

    def template(self) -> str | None:
        """The template text: ``chat_template`` itself when it is Jinja, else the file it names."""
        value = self.chat_template
        if value is None or "{%" in value or "{{" in value:
            return value
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"dataset.chat_template: {value!r} is neither a Jinja template nor a file"
            )
        return path.read_text(encoding="utf-8")

    def tokenise(self, rows: list[Any], tokenizer: Any, with_prompts: bool) -> Tokenised:
        from ugro_hpo.lora.sft_formats import tokenise_chats

        template = self.template()
        if template is None and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"dataset.chat_template: the tokenizer of {getattr(tokenizer, 'name_or_path', 'the model')} "
                "has no chat template; give one (a Jinja string or a file holding one)"
            )
        conversations = [row[self.messages] for row in rows]
        return tokenise_chats(conversations, tokenizer, template, self.seq_len, self.loss_on,
                              with_prompts, self.messages)  # fmt: skip


class PydocQA(SftSource):
    """Questions and answers about Python's standard library (`ugro_hpo.lora.pydoc_qa`):
    offline everywhere, deterministic, split by ``seed``."""

    name = "pydoc_qa"

    def __init__(self, seq_len: int = 128, eval_fraction: float = 0.1, **kwargs: Any) -> None:
        super().__init__(seq_len=seq_len, eval_fraction=eval_fraction, **kwargs)

    def load_rows(self) -> tuple[list[Any], list[Any]]:
        from ugro_hpo.lora.pydoc_qa import PROMPT, pairs
        from ugro_hpo.lora.rows import hold_out

        rows = [PROMPT.format(question=q) for q, _ in pairs()]
        return hold_out(list(zip(rows, (a for _, a in pairs()), strict=True)), self.eval_fraction,
                        self.seed)  # fmt: skip

    def tokenise(self, rows: list[Any], tokenizer: Any, with_prompts: bool) -> Tokenised:
        from ugro_hpo.lora.sft_formats import tokenise_pairs

        return tokenise_pairs(rows, tokenizer, self.seq_len, self.loss_on, with_prompts)
