"""Experiment tracking: trackers (MLflow, W&B) fed from one place, failures contained."""
