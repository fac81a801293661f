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
import re
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.lora.quiet import quiet_transformers

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
        chat_template: str | None = None,
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
        self.chat_template = chat_template  # for a tokenizer that has none of its own

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
        config = self.config()
        quantized = getattr(config, "quantization_config", None)
        if quantized and gpu <= 0:
            method = (
                quantized.get("quant_method") if isinstance(quantized, dict) else None
            ) or getattr(quantized, "quant_method", "quantised")
            raise ConfigError(
                f"model {self.name_or_path} is stored quantised ({method}) and needs a CUDA "
                "GPU; set resources.gpu=1 on a machine with a GPU"
            )

    def config(self) -> Any:
        """The model's transformers config (read from the hub cache or the model's folder)."""
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(
                self.name_or_path, revision=self.revision, trust_remote_code=self.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"model.name_or_path: cannot load {self.name_or_path!r} ({first})"
            ) from None

    def tokenizer(self) -> Any:
        """The model's tokenizer, with a pad token (EOS when it has none) and ``chat_template``
        when it has no template of its own."""
        from transformers import AutoTokenizer

        quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(
            self.name_or_path, revision=self.revision, trust_remote_code=self.trust_remote_code
        )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self.chat_template and not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = self.chat_template
        return tokenizer

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
        from transformers import AutoModelForCausalLM

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
        tokenizer = self.tokenizer()
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
        chat_template: str | None = None,
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
        super().__init__(str(path), dtype="float32", target_modules=target_modules,
                         chat_template=chat_template)  # fmt: skip

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
                from ugro_hpo.lora.tiny_build import build_tiny_llama

                build_tiny_llama(self.path, **self.settings)
