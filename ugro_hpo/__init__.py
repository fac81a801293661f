"""ugro_hpo: hyperparameter optimisation for LoRA fine-tuning of causal language models.

The package is light to import: heavy libraries (torch, transformers, ray, mlflow, wandb)
are imported only where a study actually needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ugro_hpo.sweeper.reporting import report  # light: what a Hydra app calls inside a sweep

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ugro_hpo.pipeline import StudyResult


def compose(*overrides: str) -> Any:
    """Compose the app's config with command-line style overrides (see `ugro_hpo.config.compose`)."""
    from ugro_hpo.config.compose import compose as _compose

    return _compose(*overrides)


def run(cfg: Any, run_dir: str | None = None, echo: bool = True) -> StudyResult:
    """Run one study from a composed config (see `ugro_hpo.pipeline.run`)."""
    from ugro_hpo.pipeline import run as _run

    return _run(cfg, run_dir=run_dir, echo=echo)


__all__ = ["__version__", "compose", "report", "run"]
