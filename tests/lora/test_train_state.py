"""A LoRA trial's training state saved and loaded: 5 steps, a checkpoint, 5 more steps train
exactly as 10 steps straight (dropout on, so the random generators matter)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import torch
from lora_support import untrained_tiny  # noqa: F401  (the `tiny` fixture)

from ugro_hpo.lora.data import PydocTopics
from ugro_hpo.lora.models import TinyLlama
from ugro_hpo.lora.training import Hyperparameters, TrainingRun, lora_config, train

# Same process, same CPU kernels, same order of operations: the resumed run repeats the
# straight one bit for bit; the tolerance only allows for summation order in a BLAS build.
TOLERANCE = 1e-6
HP = {"lora_dropout": 0.3, "learning_rate": 5e-3, "warmup_ratio": 0.2, "batch_size": 4,
      "gradient_accumulation_steps": 2}  # fmt: skip


@pytest.fixture(scope="module")
def blocks(tiny: TinyLlama):
    _, tokenizer = tiny.load("cpu")
    return PydocTopics(seq_len=32, max_train_chunks=64, max_eval_chunks=8, seed=0).blocks(tokenizer)


def _train(tiny, blocks, keep: Path, *, checkpoint_every=0, resume_from=None, stop_at=None):
    """Train up to 10 steps (reports every step); ``stop_at``: leave at that step's report,
    keeping the checkpoint it carried."""
    from peft import get_peft_model

    hp = Hyperparameters.from_values(HP)
    torch.manual_seed(0)
    base, _ = tiny.load("cpu")
    model = get_peft_model(base, lora_config(hp, tiny.target_modules))
    reports: list[tuple[int, float]] = []
    saved: dict[int, Path] = {}

    def report(step, checkpoint=None, **metrics):
        reports.append((step, metrics["eval_loss"]))
        if checkpoint is not None:
            saved[step] = Path(shutil.copytree(checkpoint, Path(keep) / f"step_{step}"))
        if step == stop_at:
            raise SystemExit(0)

    run = TrainingRun(data=blocks, max_steps=10, evaluation_steps=list(range(1, 11)), seed=3,
                      device="cpu", checkpoint_every=checkpoint_every,
                      resume_from=str(resume_from) if resume_from else None)  # fmt: skip
    try:
        final = train(model, hp, run, report)
    except SystemExit:
        final = None
    return reports, final, saved


def test_five_steps_a_checkpoint_and_five_more_train_as_ten_straight(tiny, blocks, tmp_path):
    straight, straight_final, _ = _train(tiny, blocks, tmp_path)
    first, _, saved = _train(tiny, blocks, tmp_path, checkpoint_every=5, stop_at=5)
    assert [s for s, _ in first] == [1, 2, 3, 4, 5] and set(saved) == {5}
    # Whatever ran between the two halves (another trial in a reused worker) moved every
    # generator on: the checkpoint must put them back.
    torch.manual_seed(1234)
    random.seed(1234)
    resumed, resumed_final, _ = _train(tiny, blocks, tmp_path, resume_from=saved[5])
    assert [s for s, _ in resumed] == [6, 7, 8, 9, 10]
    for (step, loss), (step_again, loss_again) in zip(straight[5:], resumed, strict=True):
        assert step == step_again and loss_again == pytest.approx(loss, abs=TOLERANCE)
    assert straight_final is not None and resumed_final is not None
    assert resumed_final["eval_loss"] == pytest.approx(straight_final["eval_loss"], abs=TOLERANCE)
    assert resumed_final["best_step"] == straight_final["best_step"]


def test_without_the_generators_restored_the_resumed_run_differs(tiny, blocks, tmp_path):
    """Dropout draws from torch's generator: the test above can tell a restore from none."""
    straight, _, _ = _train(tiny, blocks, tmp_path)
    _, _, saved = _train(tiny, blocks, tmp_path, checkpoint_every=5, stop_at=5)
    folder = saved[5]
    state = torch.load(folder / "tensors.pt", weights_only=True)
    state["torch_rng"] = torch.Generator().manual_seed(99).get_state()
    torch.save(state, folder / "tensors.pt")
    resumed, _, _ = _train(tiny, blocks, tmp_path, resume_from=folder)
    assert resumed[-1][1] != pytest.approx(straight[-1][1], abs=TOLERANCE)


def test_a_folder_that_is_not_a_checkpoint_is_refused(tiny, blocks, tmp_path):
    (tmp_path / "state.json").write_text('{"format": 99}')
    with pytest.raises(ValueError, match="not a training checkpoint"):
        _train(tiny, blocks, tmp_path, resume_from=tmp_path)
