"""Data sources for fine-tuning, and plain text tokenised into fixed-length blocks.

Sources are config-group options (`dataset`): Python's own help texts (offline everywhere),
a dataset from the Hugging Face hub or saved with ``save_to_disk``, or plain text files; the
instruction and chat sources are in `ugro_hpo.lora.sft_data`. Constructing a source is cheap;
the data is read and tokenised inside a trial, once per worker process.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ugro_hpo.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from ugro_hpo.lora.batches import Batch


class BatchSource(Protocol):
    """What a trial trains and evaluates on."""

    def stream(self, batch_size: int, seed: int) -> Any:
        """Training batches (``.next()``) in a seeded order, the same for every trial."""

    def eval_batches(self) -> list[Batch]:
        """The held-out batches every evaluation runs over."""


@dataclass
class TokenBlocks:
    """Train and eval token blocks, each row ``seq_len`` tokens long."""

    train: torch.Tensor
    eval: torch.Tensor

    @property
    def seq_len(self) -> int:
        return int(self.train.shape[1])

    def stream(self, batch_size: int, seed: int) -> Any:
        from ugro_hpo.lora.batches import BlockStream

        return BlockStream({"input_ids": self.train}, batch_size, seed)

    def eval_batches(self) -> list[Batch]:
        from ugro_hpo.lora.batches import EVAL_BATCH_SIZE, text_batch

        return [text_batch(self.eval[i : i + EVAL_BATCH_SIZE])
                for i in range(0, len(self.eval), EVAL_BATCH_SIZE)]  # fmt: skip


class DataSource(ABC):
    """A dataset option: where the data comes from and how a trial gets its batches."""

    name = "data"
    supervised = False
    """Has completions to learn (instruction, chat): generation can be scored against them."""

    @abstractmethod
    def check(self) -> None:
        """On the driver, before any trial: the data loads (one line now, not an error in
        every trial)."""

    @abstractmethod
    def batches(self, tokenizer: Any) -> BatchSource:
        """What a trial trains and evaluates on, tokenised with ``tokenizer`` (cached)."""


class TextSource(DataSource):
    """A corpus with a deterministic split; subclasses say where the documents come from."""

    name = "text"

    def __init__(
        self,
        seq_len: int = 256,
        eval_fraction: float = 0.1,
        max_train_chunks: int | None = None,
        max_eval_chunks: int | None = 64,
        seed: int = 0,
    ) -> None:
        if seq_len < 8:
            raise ConfigError(f"dataset.seq_len: must be at least 8, got {seq_len}")
        if not 0.0 < eval_fraction < 1.0:
            raise ConfigError(
                f"dataset.eval_fraction: must be between 0 and 1, got {eval_fraction}"
            )
        self.seq_len = int(seq_len)
        self.eval_fraction = float(eval_fraction)
        self.max_train_chunks = max_train_chunks
        self.max_eval_chunks = max_eval_chunks
        self.seed = int(seed)
        self._cache: dict[str, TokenBlocks] = {}

    @abstractmethod
    def documents(self) -> tuple[list[str], list[str] | None]:
        """Train documents and, when the source has its own, eval documents (else None)."""

    def split(self) -> tuple[list[str], list[str]]:
        """Train and eval documents; without an eval split, a seeded share of the documents."""
        train, held_out = self.documents()
        train = [d for d in train if d.strip()]
        if held_out is not None:
            return train, [d for d in held_out if d.strip()]
        if len(train) < 2:
            raise ConfigError(
                f"dataset {self.name}: needs at least two documents to split train/eval"
            )
        order = list(range(len(train)))
        random.Random(self.seed).shuffle(order)
        n_eval = max(1, math.ceil(self.eval_fraction * len(train)))
        eval_ids = set(order[:n_eval])
        return [d for i, d in enumerate(train) if i not in eval_ids], [
            train[i] for i in sorted(eval_ids)
        ]

    def check(self) -> None:
        """On the driver, before any trial: the documents load and split (a missing split or
        field is one line now, not a failure in every trial; a hub download lands in the
        cache once, instead of in every trial at the same time)."""
        self.split()

    def batches(self, tokenizer: Any) -> BatchSource:
        return self.blocks(tokenizer)

    def blocks(self, tokenizer: Any) -> TokenBlocks:
        """Tokenised blocks (cached per tokenizer in this process)."""
        key = f"{getattr(tokenizer, 'name_or_path', '')}:{len(tokenizer)}"
        if key not in self._cache:
            train_docs, eval_docs = self.split()
            train = to_blocks(train_docs, tokenizer, self.seq_len, self.max_train_chunks)
            held_out = to_blocks(eval_docs, tokenizer, self.seq_len, self.max_eval_chunks)
            if len(train) == 0 or len(held_out) == 0:
                raise ConfigError(
                    f"dataset {self.name}: too little text for one block of {self.seq_len} tokens"
                )
            self._cache[key] = TokenBlocks(train=train, eval=held_out)
        return self._cache[key]


def to_blocks(
    documents: list[str], tokenizer: Any, seq_len: int, limit: int | None
) -> torch.Tensor:
    """Concatenate documents (each ended by EOS) and cut the stream into full blocks."""
    import torch

    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
        if limit is not None and len(stream) >= limit * seq_len:
            break
    count = len(stream) // seq_len
    if limit is not None:
        count = min(count, limit)
    return torch.tensor(stream[: count * seq_len], dtype=torch.long).view(count, seq_len)


class PydocTopics(TextSource):
    """Python's help topics (``pydoc_data.topics``): present wherever Python is."""

    name = "pydoc_topics"

    def documents(self) -> tuple[list[str], list[str] | None]:
        from pydoc_data.topics import topics

        return [topics[key] for key in sorted(topics)], None


class TextFiles(TextSource):
    """Plain-text files, split into paragraphs (blank-line separated) as documents."""

    name = "text_files"

    def __init__(self, paths: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(paths, str) or not paths:
            raise ConfigError(
                "dataset.paths: give a list of text files, e.g. dataset.paths=[a.txt,b.txt]"
            )
        self.paths = [Path(p).expanduser() for p in paths]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise ConfigError(f"dataset.paths: file(s) not found: {missing}")

    def documents(self) -> tuple[list[str], list[str] | None]:
        docs: list[str] = []
        for path in self.paths:
            text = path.read_text(encoding="utf-8", errors="replace")
            docs += [p.strip() for p in text.split("\n\n") if p.strip()]
        return docs, None


class HubDataset(TextSource):
    """A Hugging Face dataset: a hub id (``load_dataset``) or a directory saved with ``save_to_disk``."""

    def __init__(
        self,
        path: str,
        name: str | None = None,
        text_field: str = "text",
        train_split: str = "train",
        eval_split: str | None = "validation",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not path:
            raise ConfigError(
                "dataset.path: give a hub dataset id or a directory saved with save_to_disk"
            )
        self.path = str(path)
        self.config_name = name
        self.name = self.path if name is None else f"{self.path}/{name}"
        self.text_field = text_field
        self.train_split = train_split
        self.eval_split = eval_split

    def _load(self) -> Any:
        import datasets

        local = Path(self.path).expanduser()
        try:
            if local.is_dir():
                return datasets.load_from_disk(str(local))
            return datasets.load_dataset(self.path, self.config_name)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"dataset.path: cannot load {self.path!r} ({first})") from None

    def documents(self) -> tuple[list[str], list[str] | None]:
        loaded = self._load()
        if not hasattr(loaded, "keys"):  # a single Dataset, not a DatasetDict
            return self._texts(loaded), None
        splits = list(loaded.keys())
        if self.train_split not in splits:
            raise ConfigError(f"dataset.train_split: {self.train_split!r} not in {splits}")
        train = self._texts(loaded[self.train_split])
        if self.eval_split and self.eval_split in splits:
            return train, self._texts(loaded[self.eval_split])
        return train, None

    def _texts(self, split: Any) -> list[str]:
        if self.text_field not in split.column_names:
            raise ConfigError(
                f"dataset.text_field: {self.text_field!r} not in columns {split.column_names}"
            )
        return [str(t) for t in split[self.text_field]]
