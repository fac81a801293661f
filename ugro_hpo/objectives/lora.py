"""The `lora` objective: fine-tune the configured model with a LoRA adapter, one trial each.

A trial loads the base model (cached on local disk, so a reload is cheap), wraps it with the
trial's LoRA configuration, trains for ``max_steps`` optimiser steps, and reports
``eval_loss``, ``eval_perplexity``, ``eval_token_accuracy`` and ``train_loss`` at every
evaluation so schedulers can stop it early. On instruction or chat data,
``generate_eval_n`` held-out prompts are completed greedily at the end and scored
(``eval_exact_match``, ``eval_token_f1``). Nothing of a trial outlives it: the model,
optimiser and adapter are dropped and memory is released before the worker takes the next
trial.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.lora.data import DataSource
from ugro_hpo.lora.models import PretrainedModel
from ugro_hpo.lora.training import LR_SCHEDULERS, OPTIMIZERS, Hyperparameters
from ugro_hpo.objectives.base import Objective, ReportFn, TrialContext
from ugro_hpo.space import SearchSpace
from ugro_hpo.validation import whole_number

log = logging.getLogger(__name__)
_KNOWN_CHOICES = {"optimizer_type": OPTIMIZERS, "lr_scheduler_type": LR_SCHEDULERS}
GENERATION_METRICS = frozenset({"eval_exact_match", "eval_token_f1"})


class LoraObjective(Objective):
    """LoRA fine-tuning of ``model`` on ``dataset``."""

    name = "lora"
    parameters = Hyperparameters.names()
    metrics = GENERATION_METRICS | {"eval_loss", "eval_perplexity", "eval_token_accuracy",
                                     "train_loss"}  # fmt: skip
    uses_gpu = True
    runs_in_groups = True  # resources.workers > 1: `lora.distributed`

    def __init__(
        self,
        model: PretrainedModel,
        dataset: DataSource,
        fixed: Mapping[str, Any] | None = None,
        save_adapter: bool = False,
        keep_adapters: int = 3,
        generate_eval_n: int = 0,
        generate_max_new_tokens: int = 64,
        checkpoint_every: int = 0,
    ) -> None:
        if not isinstance(model, PretrainedModel):
            raise ConfigError(
                "objective.model: choose a model option (model=tiny_llama, model=hf, ...)"
            )
        if not isinstance(dataset, DataSource):
            raise ConfigError(
                "objective.dataset: choose a dataset option (dataset=pydoc_topics, ...)"
            )
        for key, value, low in (("generate_eval_n", generate_eval_n, 0),
                                ("generate_max_new_tokens", generate_max_new_tokens, 1),
                                ("checkpoint_every", checkpoint_every, 0)):  # fmt: skip
            whole_number(value, f"objective.{key}", low)
        if generate_eval_n and not dataset.supervised:
            raise ConfigError(
                f"objective.generate_eval_n: dataset {dataset.name} has no completions to "
                "compare with; use dataset=instruction, chat or pydoc_qa, or set it to 0"
            )
        self.generate_eval_n = generate_eval_n
        self.generate_max_new_tokens = generate_max_new_tokens
        # Generation metrics come once, at the end: intermediate reports cannot carry them.
        self.reports_every_metric = not generate_eval_n
        self.dataset_summary: str | None = None
        self._packing_checked: set[str] = set()
        self.model = model
        self.dataset = dataset
        self.gpu_only = model.gpu_only  # a quantised model cannot run without a GPU
        self.gpu_memory_gib = model.gpu_memory_gib  # its weights' size, when its name says
        self.fixed = dict(fixed or {})
        Hyperparameters.from_values(self.fixed)  # a typo in objective.fixed fails at start-up
        self.save_adapter = bool(save_adapter)
        self.keep_adapters = int(keep_adapters)
        # Every checkpoint_every steps the training state goes to Ray's storage path (an
        # evaluation step too, so the checkpoint rides on a report the schedulers can read);
        # finished trials keep theirs only among the keep_adapters best.
        self.checkpoint_every = int(checkpoint_every)
        self.keep_checkpoints = self.keep_adapters

    def check(self, space: SearchSpace) -> None:
        super().check(space)
        wanted = [m for m in space.metric_names if m in GENERATION_METRICS]
        if wanted and not self.generate_eval_n:
            raise ConfigError(
                f"search space {space.source}: {wanted} come from generating completions; set "
                "objective.generate_eval_n=N (held-out examples to complete at the end)"
            )
        if space.metric_names and space.metric_names[0] in GENERATION_METRICS:
            log.warning("%s is measured once, at the end of a trial: early stopping cannot use "
                        "it (list eval_loss first to stop poor trials early)", space.metric_names[0])  # fmt: skip
        for parameter in space.parameters:
            allowed = _KNOWN_CHOICES.get(parameter.name)
            if allowed and parameter.choices:
                wrong = [c for c in parameter.choices if c not in allowed]
                if wrong:
                    raise ConfigError(
                        f"search space {space.source}: parameter {parameter.name!r}: choices {wrong} are not among {list(allowed)}"
                    )
        intended = space.metadata.get("model")
        if intended and intended != self.model.name:
            log.warning(
                "search space %s was written for model %s; this study uses %s",
                space.source,
                intended,
                self.model.name,
            )

    def describe(self) -> dict[str, str]:
        described = {"objective": self.name, "model": self.model.name, "dataset": self.dataset.name}
        if self.dataset_summary:
            described["dataset_examples"] = self.dataset_summary
        return described

    def prepare(self, resources: Mapping[str, float]) -> None:
        """Build or check the base model and load the dataset once, on the driver, before any
        trial. Instruction and chat data are tokenised here too, so a missing template, a
        model that cannot pack, or a split left empty by truncation is one line now, and the
        counts of truncated and dropped examples are said once."""
        self.model.prepare(gpu=float(resources.get("gpu", 0)))
        self.dataset.check()
        if not self.dataset.supervised:
            return
        from ugro_hpo.lora.sft_data import SftSource

        assert isinstance(self.dataset, SftSource)
        if self.dataset.packing:
            from ugro_hpo.lora.packing import refuse_unpackable

            refuse_unpackable(self.model.config(), self.model.name)
        self.dataset_summary = self.dataset.batches(self.model.tokenizer()).describe()
        log.info("dataset %s: %s", self.dataset.name, self.dataset_summary)

    def __call__(
        self, params: dict[str, Any], report: ReportFn, context: TrialContext
    ) -> dict[str, float]:
        import torch
        from peft import get_peft_model

        from ugro_hpo.lora.training import TrainingRun, lora_config, train

        values = {**self.fixed, **params}
        if "target_modules" not in values and context.metadata.get("target_modules"):
            values["target_modules"] = context.metadata["target_modules"]
        hp = Hyperparameters.from_values(values)
        device = trial_device(context.resources)
        torch.manual_seed(context.seed)

        base, tokenizer = self.model.load(device)
        data = self.dataset.batches(tokenizer)
        if getattr(self.dataset, "packing", False) and self.model.name not in self._packing_checked:
            from ugro_hpo.lora.packing import check_packing

            check_packing(base, device, len(tokenizer))  # once per worker and model
            self._packing_checked.add(self.model.name)
        model = get_peft_model(base, lora_config(hp, self.model.target_modules))
        run = TrainingRun(
            data=data,
            max_steps=context.max_steps,
            evaluation_steps=checkpoint_steps(context, self.checkpoint_every),
            seed=context.seed,
            device=device,
            amp_dtype=self.model.amp_dtype(device),
            checkpoint_every=self.checkpoint_every,
            resume_from=context.checkpoint,
        )
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if context.workers > 1:  # one rank of a data-parallel group (resources.workers)
            from ugro_hpo.lora.distributed import train_in_group

            metrics, model = train_in_group(model, hp, run, report, context.strategy)
        else:
            metrics = train(model, hp, run, report)
        if self.generate_eval_n:
            from ugro_hpo.lora.generation import generation_metrics

            prompts = data.prompts[: self.generate_eval_n]  # type: ignore[attr-defined]
            metrics.update(generation_metrics(model, tokenizer, prompts, device,
                                              self.generate_max_new_tokens))  # fmt: skip
        if device == "cuda":  # what a trial needs, to decide how many share a card
            metrics["gpu_memory_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        if self.save_adapter and (context.workers == 1 or _main_rank()):
            from ugro_hpo.lora.adapters import save_adapter

            save_adapter(model, context, metrics["eval_loss"], keep=self.keep_adapters)
        return metrics


def checkpoint_steps(context: TrialContext, every: int) -> list[int]:
    """The evaluation steps, and every ``every``-th step (a checkpoint step is evaluated)."""
    steps = set(context.evaluation_steps())
    if every:
        steps.update(range(every, context.max_steps + 1, every))
    return sorted(steps)


def trial_device(resources: Mapping[str, float]) -> str:
    """``cuda`` when the trial was given a GPU, else ``cpu`` with one thread per CPU it was
    given. A GPU asked for but not seen by CUDA (a driver older than the torch build, a
    CPU-only torch) fails the trial loudly instead of training on the CPU unnoticed. A trial
    given a fraction of a GPU may allocate only that fraction of its memory, so trials
    sharing a card cannot starve each other."""
    import torch

    gpu = float(resources.get("gpu", 0))
    if gpu <= 0:
        torch.set_num_threads(max(1, int(resources.get("cpu", 1))))
        return "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"resources.gpu={gpu:g} but this worker sees no CUDA device (torch "
            f"{torch.__version__}, CUDA {torch.version.cuda or 'none'}): check the NVIDIA driver "
            "and the torch build, or set resources.gpu=0"
        )
    if gpu < 1:
        torch.cuda.set_per_process_memory_fraction(gpu)
    return "cuda"


def _main_rank() -> bool:
    from ugro_hpo.lora.distributed import is_main_rank

    return is_main_rank()
