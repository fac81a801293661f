"""Experiment tracking: trackers (MLflow, W&B) told the same events from one hub, with
failures contained; the bridge turns the searcher's trial events into tracker events. (Each
tracker imports its library only when it connects.)"""

from ugro_hpo.tracking.bridge import TrackingBridge
from ugro_hpo.tracking.hub import Trackers
from ugro_hpo.tracking.mlflow_tracker import MlflowTracker
from ugro_hpo.tracking.tracker import StudyInfo, Tracker, TrialEnd, TrialStart
from ugro_hpo.tracking.wandb_tracker import WandbTracker

__all__ = [
    "MlflowTracker",
    "StudyInfo",
    "Tracker",
    "Trackers",
    "TrackingBridge",
    "TrialEnd",
    "TrialStart",
    "WandbTracker",
]
