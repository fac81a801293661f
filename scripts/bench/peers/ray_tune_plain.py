"""Plain Ray Tune as its documentation shows it: a function trainable, a Tuner, defaults.

    python ray_tune_plain.py N_TRIALS OUT_DIR [--reuse-actors]

N trivial Branin trials, two at a time, random search (Ray's default searcher).
"""

import sys

import ray
from ray import tune

from ugro_hpo.objectives.synthetic import branin as branin_function  # stdlib only


def branin(config):
    tune.report({"value": branin_function([config["x1"], config["x2"]])[0]})


def main() -> None:
    n_trials, out_dir = int(sys.argv[1]), sys.argv[2]
    reuse = "--reuse-actors" in sys.argv
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        branin,
        param_space={"x1": tune.uniform(-5, 10), "x2": tune.uniform(0, 15)},
        tune_config=tune.TuneConfig(
            metric="value", mode="min", num_samples=n_trials, max_concurrent_trials=2,
            **({"reuse_actors": True} if reuse else {}),
        ),
        run_config=tune.RunConfig(storage_path=out_dir, verbose=0),
    )  # fmt: skip
    results = tuner.fit()
    assert len(results) == n_trials and not results.errors, results.errors
    print("best", results.get_best_result().metrics["value"])


if __name__ == "__main__":
    main()
