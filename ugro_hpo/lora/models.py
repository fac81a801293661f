"""Base models for LoRA: any hub id or local directory, and a tiny Llama built offline.

Every model is loaded the same way, with ``from_pretrained`` from a hub id or a directory; the
tiny Llama is first built, briefly pre-trained and saved to a cache directory, then loaded
back like any other. Constructing a model option is cheap and imports nothing heavy: the
weights are loaded inside each trial.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError

log = logging.getLogger(__name__)
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = (None, "4bit", "8bit")
_SIZE_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)([bBmM])(?![a-zA-Z])")
_BNB_NAME = re.compile(r"bnb[-_.]?([48])[-_.]?bit", re.IGNORECASE)


def half_dtype() -> Any:
    """bf16 on GPUs that compute in it (Ampere and later), else fp16 (with loss scaling): a GPU
    that only emulates bf16 is slower in it than in fp32."""
    import torch

    return (
        torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    )


def quiet_transformers() -> None:
    """Progress bars and deprecation chatter from transformers/peft would drown our progress."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")


class PretrainedModel:
    """A causal LM loaded with ``AutoModelForCausalLM.from_pretrained``."""

    def __init__(
        self,
        name_or_path: str,
        dtype: str = "auto",
        quantization: str | None = None,
        gradient_checkpointing: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        target_modules: list[str] | None = None,
    ) -> None:
        if not name_or_path:
            raise ConfigError(
                "model.name_or_path: give a hub id (org/name) or a local model directory"
            )
        if dtype not in DTYPES:
            raise ConfigError(f"model.dtype: {dtype!r} is not one of {list(DTYPES)}")
        if quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"model.quantization: {quantization!r} is not one of {list(QUANTIZATIONS)}"
            )
        self.name_or_path = str(name_or_path)
        self.dtype = dtype
        self.quantization = quantization
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.trust_remote_code = bool(trust_remote_code)
        self.revision = revision
        self.target_modules = list(target_modules) if target_modules else None

    @property
    def name(self) -> str:
        """The model id reported to trackers."""
        return self.name_or_path

    @property
    def gpu_only(self) -> str | None:
        """Why this model cannot run without a CUDA GPU, read from its settings and name alone
        (``unsloth/tinyllama-bnb-4bit`` is stored in 4 bits), or None."""
        if self.quantization:
            return f"model.quantization={self.quantization} (bitsandbytes) needs a CUDA GPU"
        match = _BNB_NAME.search(self.name_or_path)
        if match:
            return f"model {self.name_or_path} is stored in {match.group(1)} bits (bitsandbytes) and needs a CUDA GPU"
        return None

    @property
    def gpu_memory_gib(self) -> float | None:
        """The weights' size on a GPU, from the size in the model's name (``Llama-2-7b``,
        ``Qwen2.5-0.5B``); None when the name does not say."""
        match = _SIZE_NAME.search(self.name_or_path.rsplit("/", 1)[-1])
        if not match:
            return None
        params = float(match.group(1)) * (1e9 if match.group(2).lower() == "b" else 1e6)
        per_param = {"4bit": 0.5, "8bit": 1.0}.get(self.quantization or "", 2.0)
        if self.dtype == "float32":
            per_param = 4.0
        return params * per_param / 2**30

    def prepare(self, gpu: float) -> None:
        """Driver-side check before any trial: the model exists, and one stored quantised (its
        config says so) has a GPU to run on."""
        if self.gpu_only and gpu <= 0:
            raise ConfigError(f"{self.gpu_only}; set resources.gpu=1 on a machine with a GPU")
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(
                self.name_or_path, revision=self.revision, trust_remote_code=self.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"model.name_or_path: cannot load {self.name_or_path!r} ({first})"
            ) from None
        quantized = getattr(config, "quantization_config", None)
        if quantized and gpu <= 0:
            method = (
                quantized.get("quant_method") if isinstance(quantized, dict) else None
            ) or getattr(quantized, "quant_method", "quantised")
            raise ConfigError(
                f"model {self.name_or_path} is stored quantised ({method}) and needs a CUDA "
                "GPU; set resources.gpu=1 on a machine with a GPU"
            )

    def torch_dtype(self, device: str) -> Any:
        """The weights' dtype: float32 on CPU; on a GPU bf16 where it computes in bf16, else fp16."""
        import torch

        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        if device.startswith("cuda"):
            return half_dtype()
        return torch.float32

    def amp_dtype(self, device: str) -> Any:
        """What autocast computes in on a GPU: the weights' half dtype (none for float32
        weights asked for explicitly), and none on CPU."""
        import torch

        weights = self.torch_dtype(device)
        if not device.startswith("cuda") or weights == torch.float32:
            return None
        return weights

    def load(self, device: str) -> tuple[Any, Any]:
        """Model (on ``device``, ready for k-bit training or gradient checkpointing) and tokenizer."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        dtype = self.torch_dtype(device)
        kwargs: dict[str, Any] = {
            "dtype": dtype,
            "revision": self.revision,
            "trust_remote_code": self.trust_remote_code,
        }
        if self.quantization:
            if not device.startswith("cuda"):
                raise RuntimeError(f"model.quantization={self.quantization} needs a CUDA GPU")
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=self.quantization == "4bit",
                load_in_8bit=self.quantization == "8bit",
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=dtype,
                bnb_4bit_use_double_quant=True,
            )
        if device.startswith("cuda"):
            kwargs["device_map"] = {"": torch.device(device).index or 0}
        model = AutoModelForCausalLM.from_pretrained(self.name_or_path, **kwargs)
        if not device.startswith("cuda"):
            model.to(device)  # type: ignore[arg-type]  # transformers' stub types the wrong argument
        tokenizer = AutoTokenizer.from_pretrained(
            self.name_or_path, revision=self.revision, trust_remote_code=self.trust_remote_code
        )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self.quantization:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=self.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        elif self.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            model.enable_input_require_grads()
        model.config.use_cache = False
        return model, tokenizer


class TinyLlama(PretrainedModel):
    """A small Llama built from a config, pre-trained once on Python's docstrings, and cached.

    The fine-tuning corpus (Python's help topics) is a different text, so LoRA adapts a model
    that already knows some English and Python, as with a real base model.
    """

    def __init__(
        self,
        cache_dir: str = "outputs/models",
        vocab_size: int = 2048,
        hidden_size: int = 128,
        intermediate_size: int = 344,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        max_position_embeddings: int = 256,
        pretrain_steps: int = 300,
        pretrain_seq_len: int = 128,
        pretrain_batch_size: int = 16,
        pretrain_lr: float = 3e-3,
        seed: int = 0,
        target_modules: list[str] | None = None,
    ) -> None:
        self.settings = {
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": num_key_value_heads,
            "max_position_embeddings": max_position_embeddings,
            "pretrain_steps": pretrain_steps,
            "pretrain_seq_len": pretrain_seq_len,
            "pretrain_batch_size": pretrain_batch_size,
            "pretrain_lr": pretrain_lr,
            "seed": seed,
        }
        if pretrain_seq_len > max_position_embeddings:
            raise ConfigError("model.pretrain_seq_len: must not exceed max_position_embeddings")
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(cache_dir).expanduser().resolve() / f"tiny-llama-{digest}"
        super().__init__(str(path), dtype="float32", target_modules=target_modules)

    @property
    def name(self) -> str:
        return "tiny-llama (built offline)"

    @property
    def path(self) -> Path:
        return Path(self.name_or_path)

    def amp_dtype(self, device: str) -> Any:
        """Tiny weights stay float32 (as mixed-precision training keeps its master weights), and
        on a GPU the steps run under autocast, with loss scaling in fp16, as a 7B model's do."""
        return half_dtype() if device.startswith("cuda") else None

    def prepare(self, gpu: float) -> None:
        """Build, pre-train and save the model once; later calls find it in the cache."""
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not (self.path / "config.json").is_file():
            log.info("building the tiny Llama once (about a minute on two CPU cores, longer on "
                     "a busy machine); later studies find it in %s", self.path.parent)  # fmt: skip
        with FileLock(str(self.path) + ".lock"):
            if not (self.path / "config.json").is_file():
                build_tiny_llama(self.path, **self.settings)


def pretraining_corpus() -> list[str]:
    """Docstrings of Python's standard library: offline everywhere, and not the fine-tuning text."""
    import ast
    import sysconfig

    texts = []
    for source in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    texts.append(doc)
    if len(texts) < 100:
        raise RuntimeError("too few standard-library docstrings to pre-train the tiny model")
    return texts


def build_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


PROGRESS_EVERY_S = 15.0
"""How often the tiny model's build says how far it is (a first run must not look hung)."""


def build_tiny_llama(path: Path, **settings: Any) -> None:
    """Build the tiny Llama, pre-train it on docstrings, and save model and tokenizer at ``path``."""
    import time

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ugro_hpo.lora.data import to_blocks

    quiet_transformers()
    started = time.time()
    texts = pretraining_corpus()
    tokenizer = build_tokenizer(texts, settings["vocab_size"])
    log.info("tiny Llama: tokenizer trained on %d docstrings (%.0f s); pre-training next",
             len(texts), time.time() - started)  # fmt: skip
    torch.manual_seed(settings["seed"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings["hidden_size"],
        intermediate_size=settings["intermediate_size"],
        num_hidden_layers=settings["num_hidden_layers"],
        num_attention_heads=settings["num_attention_heads"],
        num_key_value_heads=settings["num_key_value_heads"],
        max_position_embeddings=settings["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    blocks = to_blocks(texts, tokenizer, settings["pretrain_seq_len"], None)
    steps, batch = settings["pretrain_steps"], settings["pretrain_batch_size"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["pretrain_lr"], weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        return (
            min(1.0, (step + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1)))  # pretrain_steps=0 too
        )

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(settings["seed"])
    model.train()
    loss_value = float("nan")
    said = training_started = time.time()
    for step in range(steps):
        if step and time.time() - said >= PROGRESS_EVERY_S:
            said = time.time()
            left = (said - training_started) / step * (steps - step)
            log.info("tiny Llama: pre-training step %d/%d, loss %.2f, about %.0f s left",
                     step, steps, loss_value, left)  # fmt: skip
        rows = torch.randint(0, len(blocks), (batch,), generator=generator)
        batch_ids = blocks[rows]
        loss = model(input_ids=batch_ids, labels=batch_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())

    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    info = {**settings, "pretrain_final_loss": loss_value, "pretrain_seconds": round(time.time() - started, 1),
            "corpus": "Python standard library docstrings", "blocks": len(blocks)}  # fmt: skip
    (staging / "ugro_pretraining.json").write_text(json.dumps(info, indent=2))
    staging.rename(path)
    log.info(
        "built the tiny Llama in %.0f s (pre-training loss %.2f): %s",
        info["pretrain_seconds"],
        loss_value,
        path,
    )
