"""Transformers and PEFT kept quiet: their progress bars and deprecation chatter would drown
the study's own progress."""

from __future__ import annotations


def quiet_transformers() -> None:
    """Progress bars and deprecation chatter from transformers/peft would drown our progress."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")
