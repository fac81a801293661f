"""Does the sampler learn to avoid proposals that violate a constraint?

    .venv/bin/python scripts/bench/infeasible_learning.py [--trials 60] [--seeds 5]

An infeasible proposal never runs: it is stored as a pruned trial with its constraint values
and no value. This measures what the samplers make of that, with our own searcher on a real
SQLite study (as a study drives it, two trials in flight, no Ray: the trials' training is not
what is measured): the share of proposals that were infeasible in the first and the second
half of a study that ran ``--trials`` trials, for ``search=auto`` and for random search, on
the default LoRA space (auto: TPE; constraint ``lora_alpha >= lora_r``) and on a 2-D space
with a third of it infeasible (auto: the Gaussian process).
Target: auto's second half is at most half as infeasible as random search's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml
from benchlib import ROOT, Result

from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.samplers import sampler_factory
from ugro_hpo.optimize.searcher import StudySearcher
from ugro_hpo.optimize.storage import OpenedStudy, open_storage
from ugro_hpo.space import SearchSpace, load_search_space, parse_search_space

SAMPLERS = {
    "auto": {"_target_": "ugro_hpo.optimize.samplers.auto_sampler", "_partial_": True,
             "n_startup_trials": 10},
    "random": {"_target_": "optuna.samplers.RandomSampler"},
}  # fmt: skip
SQUARE = parse_search_space(
    yaml.safe_load(
        "parameters:\n  x1: {type: float, min: 0, max: 1}\n  x2: {type: float, min: 0, max: 1}\n"
        "constraints: ['x1 + x2 <= 0.8']\nobjectives: [{name: value}]\n"
    ),
    "2-D, x1 + x2 <= 0.8",
)


def loss(space: SearchSpace, params: dict[str, Any]) -> float:
    """A smooth function of the numeric parameters with its best near the constraint's edge."""
    total = 0.0
    for parameter in space.parameters:
        value = params.get(parameter.name)
        if parameter.type == "categorical" or value is None:
            continue
        low, high, value = float(parameter.low), float(parameter.high), float(value)  # type: ignore[arg-type]
        if parameter.log:
            low, high, value = math.log(low), math.log(high), math.log(value)
        total += ((value - low) / (high - low) - 0.55) ** 2
    return total


def infeasible_shares(
    space: SearchSpace, search: str, seed: int, trials: int
) -> tuple[float, float]:
    """Share of infeasible proposals in the first and second half of the proposals."""
    with tempfile.TemporaryDirectory() as scratch:
        storage = open_storage(f"sqlite:///{Path(scratch) / 'study.db'}")
        sampler = sampler_factory(SAMPLERS[search]).build(space, seed=seed)
        study = optuna.create_study(study_name="s", storage=storage, sampler=sampler,
                                    directions=[o.direction for o in space.objectives])  # fmt: skip
        opened = OpenedStudy(study, storage, storage.get_study_id_from_name("s"), False, 0)
        searcher = StudySearcher(opened, space, n_trials=trials, max_steps=1)
        in_flight: list[tuple[str, dict[str, Any]]] = []

        def finish(ray_id: str, params: dict[str, Any]) -> None:
            result = {
                space.metric_names[0]: loss(space, params),
                p.STEP: 1,
                p.RESULT_STATE: "complete",
            }
            searcher.on_trial_complete(ray_id, result)

        for index in range(trials):
            if len(in_flight) == 2:  # two at a time: the older one ends first
                finish(*in_flight.pop(0))
            config = searcher.suggest(f"t{index}")
            assert isinstance(config, dict), config
            in_flight.append((f"t{index}", config))
        for ray_id, params in in_flight:
            finish(ray_id, params)
        flags = [p.outcome_of(t) == p.Outcome.INFEASIBLE for t in study.get_trials(deepcopy=False)]
        opened.close()
    half = len(flags) // 2
    return sum(flags[:half]) / half, sum(flags[half:]) / (len(flags) - half)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--trials", type=int, default=60, help="trials that ran, per study")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = Result("infeasible_learning")
    spaces = {
        "lora": load_search_space(ROOT / "conf" / "search_space" / "lora.yaml"),
        "2-D": SQUARE,
    }
    details: dict[str, Any] = {"trials": args.trials, "seeds": args.seeds}
    verdicts = []
    for label, space in spaces.items():
        second = {}
        for search in SAMPLERS:
            shares = [
                infeasible_shares(space, search, seed, args.trials) for seed in range(args.seeds)
            ]
            first_half = statistics.mean(s[0] for s in shares)
            second[search] = statistics.mean(s[1] for s in shares)
            details[f"{label}/{search}"] = shares
            result.add(f"{label} space, search={search}: infeasible proposals, first half -> second",
                       f"{first_half:.0%} -> {second[search]:.0%}")  # fmt: skip
        ok = second["auto"] <= second["random"] / 2
        result.add(f"{label} space: auto's second half vs random's", f"{second['auto']:.0%} vs "
                   f"{second['random']:.0%}", "at most half", ok)  # fmt: skip
        verdicts.append(f"{label} {second['auto']:.0%} vs random {second['random']:.0%}")
    result.details = details
    return result.finish("second-half infeasible share, auto vs random: " + "; ".join(verdicts))


if __name__ == "__main__":
    raise SystemExit(main())
