"""Running trials with Ray Tune: the launcher, the function each trial runs, what can end a
study early (signals, failure streaks, time), live progress, and our schedulers."""

from ugro_hpo.lazy import lazy_exports

_EXPORTS = {
    "ensure_ray": "launcher",
    "run_trials": "launcher",
    "run_trial": "trainable",
    "release_memory": "trainable",
    "Progress": "progress",
    "FailureStreak": "run_control",
    "Heartbeat": "run_control",
    "InterruptWatch": "run_control",
    "MedianStopping": "schedulers",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
