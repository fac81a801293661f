"""Experiment tracking: trackers (MLflow, W&B) that listen to the trial events, told them by one
hub that also tells the driver's own listeners and contains the trackers' failures. (Each
tracker imports its library only when it connects.)"""

from ugro_hpo.tracking.hub import Trackers
from ugro_hpo.tracking.mlflow_tracker import MlflowTracker
from ugro_hpo.tracking.tracker import StudyInfo, Tracker
from ugro_hpo.tracking.wandb_tracker import WandbTracker

__all__ = [
    "MlflowTracker",
    "StudyInfo",
    "Tracker",
    "Trackers",
    "WandbTracker",
]
