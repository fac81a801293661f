"""Experiment tracking: trackers (MLflow, W&B) told the same events from one hub, with
failures contained; the bridge turns the searcher's trial events into tracker events."""

from ugro_hpo.lazy import lazy_exports

_EXPORTS = {
    "Tracker": "tracker",
    "StudyInfo": "tracker",
    "TrialStart": "tracker",
    "TrialEnd": "tracker",
    "Trackers": "hub",
    "TrackingBridge": "bridge",
    "MlflowTracker": "mlflow_tracker",
    "WandbTracker": "wandb_tracker",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
