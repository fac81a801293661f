"""``optimization_results.yaml``, as the Optuna sweeper writes it, so scripts that read it keep
working: ``name: optuna`` (the value it always writes), then ``best_params`` and ``best_value``
of the best complete trial, or, with several objectives, ``solutions``: the Pareto front's
``params`` and ``values``. Parameters are named as they were given (``+db`` keeps its ``+``),
so ``best_params`` can be passed back as overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ugro_hpo.sweeper.params import SweepSpace

RESULTS_FILE = "optimization_results.yaml"
RESULTS_NAME = "optuna"


def optimization_results(records: list[Any], space: Any, sweep_space: SweepSpace) -> dict[str, Any]:
    """The file's content from the study's records (``results.records.trial_records``)."""
    from ugro_hpo.results.records import pareto_front, ranked

    names = space.metric_names
    results: dict[str, Any] = {"name": RESULTS_NAME}
    if space.is_multi_objective:
        complete = [r for r in records if r.state == "complete"]
        results["solutions"] = [
            {"params": sweep_space.as_given(r.params), "values": [r.values.get(n) for n in names]}
            for r in pareto_front(complete, space)
        ]
        return results
    ordered = ranked(records, space)
    best = ordered[0] if ordered else None
    results["best_params"] = sweep_space.as_given(best.params) if best else None
    results["best_value"] = best.values.get(names[0]) if best else None
    return results


def write_optimization_results(path: Path, results: dict[str, Any]) -> None:
    from omegaconf import OmegaConf

    from ugro_hpo.security.redaction import redact_data

    OmegaConf.save(OmegaConf.create(redact_data(results)), path)
