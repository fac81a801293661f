"""What the training loop consumes: batches of model inputs with their labels and counts.

A `Batch` carries the keyword arguments of the model's forward call (``input_ids``,
``labels``, and ``attention_mask`` or ``position_ids``) and two counts read on the CPU, so the
loop never waits for the GPU to count: the real (non-padding) tokens, for throughput, and the
tokens that carry loss after the one-token shift, to weigh micro-batches of unequal size.

Instruction and chat examples are batched in one of two ways: padded, in length-grouped
batches (examples of similar length together, so little of a batch is padding), or packed
(`ugro_hpo.lora.packing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IGNORE = -100  # the label of a token that carries no loss (transformers' ignore_index)
GROUP_BATCHES = 32  # a length group: this many batches' worth of examples, sorted by length
EVAL_BATCH_SIZE = 16


@dataclass(frozen=True)
class Example:
    """One tokenised example: token ids and labels (``IGNORE`` where no loss is taken)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def targets(self) -> int:
        """Tokens that carry loss: a label at position 0 predicts nothing (no token before it)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


@dataclass(frozen=True)
class Batch:
    """Inputs of one forward call, and what they hold (counted on the CPU)."""

    inputs: dict[str, torch.Tensor]
    tokens: int  # real tokens, padding excluded
    targets: int  # tokens whose label counts, after the shift

    def to(self, device: str) -> dict[str, torch.Tensor]:
        """The inputs on ``device``; a tensor given under two names (text: ids are the labels)
        is moved once."""
        moved: dict[int, torch.Tensor] = {}
        out = {}
        for name, tensor in self.inputs.items():
            if id(tensor) not in moved:
                moved[id(tensor)] = tensor.to(device, non_blocking=True)
            out[name] = moved[id(tensor)]
        return out


def text_batch(blocks: torch.Tensor) -> Batch:
    """Full blocks of text: every token is real, every label but the first counts."""
    return Batch({"input_ids": blocks, "labels": blocks}, int(blocks.numel()),
                 int(blocks.shape[0] * (blocks.shape[1] - 1)))  # fmt: skip


def padded_batch(examples: Sequence[Example], pad_id: int) -> Batch:
    """Examples right-padded to the longest of them, with an attention mask."""
    import torch

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return Batch({"input_ids": ids, "attention_mask": mask, "labels": labels},
                 sum(len(e) for e in examples), sum(e.targets for e in examples))  # fmt: skip


class IndexStream:
    """Indices 0..n-1 in a seeded random order, reshuffled each epoch; ``take(k)`` always
    returns k of them, running on into the next epoch (every trial sees the same order)."""

    def __init__(self, n: int, seed: int) -> None:
        import torch

        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0

    def take(self, count: int) -> torch.Tensor:
        import torch

        parts, have = [], 0
        while have < count:
            if self.position == self.n:
                self.order = torch.randperm(self.n, generator=self.generator)
                self.position = 0
            step = min(count - have, self.n - self.position)
            parts.append(self.order[self.position : self.position + step])
            self.position += step
            have += step
        return torch.cat(parts)


class BlockStream:
    """Training blocks (text) or packed rows, ``batch_size`` of them per batch."""

    def __init__(self, rows: dict[str, torch.Tensor], batch_size: int, seed: int,
                 tokens: torch.Tensor | None = None) -> None:  # fmt: skip
        self.rows = rows
        self.batch_size = batch_size
        self.tokens = tokens  # real tokens per row (packed rows end in padding); None: all real
        self.indices = IndexStream(len(next(iter(rows.values()))), seed)

    def next(self) -> Batch:
        chosen = self.indices.take(self.batch_size)
        if "labels" not in self.rows:  # text: the ids are their own labels
            return text_batch(self.rows["input_ids"][chosen])
        inputs = {name: rows[chosen] for name, rows in self.rows.items()}
        labels = inputs["labels"][:, 1:]
        real = int(self.tokens[chosen].sum()) if self.tokens is not None else labels.numel()
        return Batch(inputs, real, int((labels != IGNORE).sum()))


class LengthGroupedStream:
    """Padded batches of ``batch_size`` examples of similar length.

    Examples are drawn in a seeded random order, ``GROUP_BATCHES`` batches' worth at a time;
    each group is sorted by length and cut into batches, served in a seeded random order. So
    a batch is mostly real tokens, and the order still changes from epoch to epoch.
    """

    def __init__(self, examples: Sequence[Example], batch_size: int, seed: int,
                 pad_id: int) -> None:  # fmt: skip
        import torch

        self.examples = examples
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.indices = IndexStream(len(examples), seed)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.queue: list[list[int]] = []

    def next(self) -> Batch:
        import torch

        if not self.queue:
            group = self.indices.take(self.batch_size * GROUP_BATCHES).tolist()
            group.sort(key=lambda i: len(self.examples[i]))
            batches = [
                group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)
            ]
            order = torch.randperm(len(batches), generator=self.generator).tolist()
            self.queue = [batches[i] for i in order]
        return padded_batch([self.examples[i] for i in self.queue.pop()], self.pad_id)


def eval_batches(
    examples: Sequence[Example], pad_id: int, size: int = EVAL_BATCH_SIZE
) -> list[Batch]:
    """Held-out examples, sorted by length and padded per batch (no order to keep)."""
    ordered = sorted(examples, key=len)
    return [padded_batch(ordered[i : i + size], pad_id) for i in range(0, len(ordered), size)]


def loss_and_accuracy(model: Any, batches: Sequence[Batch], device: str) -> tuple[float, float]:
    """Mean loss and next-token accuracy over every token that carries loss in ``batches``.

    The logits of those tokens alone are gathered before the loss, so the memory for a large
    vocabulary grows with the tokens that count, not with the padded batch.
    """
    import torch
    import torch.nn.functional as F

    total = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    for batch in batches:
        inputs = batch.to(device)
        labels = inputs.pop("labels")
        logits = model(**inputs).logits[:, :-1]
        targets = labels[:, 1:]
        keep = targets != IGNORE
        picked, wanted = logits[keep].float(), targets[keep]
        total += F.cross_entropy(picked, wanted, reduction="sum").double()
        correct += (picked.argmax(dim=-1) == wanted).sum()
        count += batch.targets
    if count == 0:
        raise RuntimeError("no evaluation token carries loss")
    return float(total) / count, int(correct) / count
