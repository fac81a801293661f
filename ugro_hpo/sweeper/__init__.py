"""ugro_hpo's engine behind Hydra's sweeper interface (``-m hydra/sweeper=ugro_hpo``).

`params` turns Hydra's sweep syntax into a search space, `job` runs one trial as a real Hydra
job of the app inside a Ray worker, and `sweep` builds and runs the study, then writes what the
Optuna sweeper writes (``optimization_results.yaml``) beside our own results.
"""
