"""ugro_hpo's engine behind Hydra's sweeper interface (``-m hydra/sweeper=ugro_hpo``), a
drop-in for Hydra's Optuna sweeper.

`params` turns Hydra's sweep syntax into a search space, `settings` the sweeper's config into
ours, `job` runs one trial as a real Hydra job of the app inside a Ray worker (its output on
the console through `console`), `guard` holds the sweeper's own reasons to end a sweep,
`trust` its side of the trust boundary, `results` writes the Optuna sweeper's
``optimization_results.yaml``, and `sweep` runs it all and says how the sweep ended.
"""
