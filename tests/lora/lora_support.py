"""What the LoRA tests share: the tiny Llama without pre-training (built once per session, in
one folder: a second module's fixture finds it there), and its chat template."""

from __future__ import annotations

import pytest

from ugro_hpo.lora.models import TinyLlama

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""The tiny model option's chat template (conf/model/tiny_llama.yaml)."""


@pytest.fixture(scope="module", name="tiny")
def untrained_tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyLlama:
    """The tiny Llama without pre-training: what these tests check (adapter shapes, optimiser
    settings, label masks, packing, reports, clean-up) needs no trained weights, and
    pre-training costs half a minute of the default suite; the studies that need a trained
    model (slow tests) use `tiny_model_cache`."""
    model = TinyLlama(
        cache_dir=str(tmp_path_factory.getbasetemp() / "untrained-tiny"),
        pretrain_steps=0,
        seed=42,
        target_modules=ALL_LINEAR,
        chat_template=CHAT_TEMPLATE,
    )
    model.prepare(gpu=0)
    return model
