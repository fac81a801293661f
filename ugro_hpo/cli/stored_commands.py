"""The commands on a study already in storage: `ugro hpo analyze`, `export-best` and
`train-best`. Nothing here needs the run that made the study, only the storage URL and the
study name; what the study holds is read through `optimize.stored_study`, which checks it,
since a shared database is written by others. Every trial is read (and its attributes checked)
once, up front, where a value Optuna or we cannot decode is one line, not a traceback; the
best trial's parameters are checked against the search space (`space.stored_params`) before
they are written or trained; output paths are checked before anything is read
(`security.paths`).
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.execution.resources import local_gpu_count
from ugro_hpo.optimize import protocol as p
from ugro_hpo.optimize.stored_study import FACT_KEYS, StoredStudy, load_stored_study, status_of
from ugro_hpo.security.limits import TooLarge, check_data
from ugro_hpo.security.paths import check_output_dir, check_output_file
from ugro_hpo.security.redaction import redact_url
from ugro_hpo.security.stored_objective import build_objective
from ugro_hpo.space.stored_params import check_stored_params
from ugro_hpo.validation import stored_whole_number

MAX_STEPS = 10**7  # the ceiling the stored config's own max_steps is held to

log = logging.getLogger("ugro_hpo")


def default_output(study_name: str, leaf: str) -> Path:
    """``outputs/<study>/<leaf>``, refused if a link there would lead outside ``outputs/``."""
    from ugro_hpo.names import check_path_name

    root = Path("outputs")
    path = root / check_path_name(study_name, "--study-name") / leaf
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(
            f"{root / study_name} leads outside {root}/ (a symbolic link?); remove it or pass "
            "--output-dir"
        )
    return path


@contextlib.contextmanager
def stored_data(study_name: str) -> Iterator[None]:
    """Reading what a shared database holds: a value that cannot be decoded (not JSON, nested
    too deeply, an unknown distribution, a value of the wrong type) is one line."""
    try:
        yield
    except (ConfigError, TooLarge):
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
            RecursionError) as exc:  # fmt: skip
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ConfigError(
            f"study {study_name!r}: a stored value cannot be read ({type(exc).__name__}"
            f"{': ' + detail if detail else ''}); the study database may have been altered"
        ) from None


def load_checked(study_name: str, storage: str) -> StoredStudy:
    """The stored study with every trial read once and its attributes checked."""
    with stored_data(study_name):
        stored = load_stored_study(study_name, storage)
        for trial in stored.study.get_trials(deepcopy=False):
            _check_trial_attrs(trial, study_name)
    return stored


def _check_trial_attrs(trial: Any, study_name: str) -> None:
    where = f"study {study_name!r}: trial {trial.number}"
    attrs = trial.user_attrs
    check_data(attrs, f"{where}: stored attributes")
    metrics = attrs.get(p.TRIAL_METRICS)
    if metrics is None:
        return
    if not isinstance(metrics, dict) or not all(
        isinstance(k, str)
        and (v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)))
        for k, v in metrics.items()
    ):
        raise ConfigError(
            f"{where}: stored metrics are not a mapping of names to numbers; the study "
            "database may have been altered"
        )


def analyze(study_name: str, storage: str, output_dir: Path | None) -> Path:
    """Rebuild summary.json, best_params.yaml, trials.csv and report/ from the storage."""
    from ugro_hpo.results.console import summary_table
    from ugro_hpo.results.summary import summarize
    from ugro_hpo.results.writers import write_study_files, write_summary

    if output_dir is not None:
        check_output_dir(output_dir, "--output-dir")
    stored = load_checked(study_name, storage)
    out = output_dir or default_output(study_name, f"analysis_{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    facts = {
        "status": status_of(stored),
        "n_trials": stored.n_trials,
        "run_dir": str(out),
        "storage": redact_url(storage),
        "search_space": stored.space.source,
        **{key: stored.facts.get(key) for key in FACT_KEYS},
    }
    with stored_data(study_name):
        summary = summarize(stored.study, stored.space, facts)
    write_study_files(stored.study, stored.space, summary, out)
    write_summary(out, summary.data)
    print(summary_table({**summary.data, "duration_s": None}, summary.ordered[:5], stored.space),
          flush=True)  # fmt: skip
    return out


def export_best(study_name: str, storage: str, output: Path) -> Path:
    """Write the best parameters (the first of the Pareto front for several objectives)."""
    from ugro_hpo.results import writers
    from ugro_hpo.results.records import best_entry, ranked, trial_records

    check_output_file(output, "--output")
    stored = load_checked(study_name, storage)
    with stored_data(study_name):
        ordered = ranked(trial_records(stored.study, stored.space), stored.space)
    if not ordered:
        raise ConfigError(f"--study-name: study {study_name!r} has no complete trial yet")
    check_stored_params(ordered[0].params, stored.space, ordered[0].number)
    summary = {"study_name": study_name, "best": best_entry(ordered[0])}
    writers.write_best_params(output, summary)
    print(f"best parameters of study {study_name} (trial {ordered[0].number}) written to {output}")
    return output


def train_best(
    study_name: str,
    storage: str,
    output_dir: Path | None,
    max_steps: int | None,
    objective_fn: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, float]:
    """Train once more with the study's best parameters, in this process, and save the adapter.

    The objective, seed, evaluation schedule and resources are the study's own, so with the
    same ``max_steps`` the result reproduces the best trial's. The objective is rebuilt from
    the stored config by the allow-list (`ugro_hpo.security.stored_objective`); a custom
    objective's function comes from ``objective_fn`` (the command line), never from storage.
    """
    from ugro_hpo.execution.trial_runner import Reporter, TrialFailed, run_objective
    from ugro_hpo.objectives.base import TrialContext
    from ugro_hpo.results import writers
    from ugro_hpo.results.records import best_entry, ranked, trial_records

    if max_steps is not None and not 1 <= max_steps <= MAX_STEPS:
        shown = (
            str(max_steps) if len(str(max_steps)) <= 30 else f"a {len(str(max_steps))}-digit number"
        )
        raise ConfigError(
            f"--max-steps: must be a whole number from 1 to {MAX_STEPS:,}, got {shown}"
        )
    if output_dir is not None:
        check_output_dir(output_dir, "--output-dir")
    stored = load_checked(study_name, storage)
    config = stored.config
    if not stored.objective:
        raise ConfigError(
            f"--study-name: study {study_name!r} has no stored config; rerun it once with this version"
        )
    with stored_data(study_name):
        ordered = ranked(trial_records(stored.study, stored.space), stored.space)
    if not ordered:
        raise ConfigError(f"--study-name: study {study_name!r} has no complete trial yet")
    best = ordered[0]
    params = check_stored_params(best.params, stored.space, best.number)
    steps = max_steps or _stored_int(config, "max_steps", 1, study_name)
    seed = _stored_int(config, "seed", 0, study_name)
    eval_every = _stored_int(config, "eval_every", 1, study_name)
    resources = _stored_resources(config.get("resources"), study_name)
    if resources["gpu"] > 0 and local_gpu_count() == 0:
        log.info("the study's trials had a GPU; this machine has none, so training runs on the CPU")
        resources["gpu"] = 0.0
    elif resources["gpu"] > 0:
        resources["gpu"] = 1.0  # one training, alone: the whole card
    spec = dict(stored.objective)
    if "save_adapter" in spec:
        spec.update(save_adapter=True, keep_adapters=1)
    objective = build_objective(spec, objective_fn, trust_remote_code)
    out = output_dir or default_output(study_name, f"best_trial_{best.number}_{steps}_steps")
    objective.prepare(resources)
    out.mkdir(parents=True, exist_ok=True)
    context = TrialContext(
        number=best.number,
        seed=seed,
        max_steps=steps,
        eval_every=min(eval_every, steps),
        metrics=tuple(stored.space.metric_names),
        resources=resources,
        run_dir=str(out),
        metadata=dict(stored.space.metadata),
    )

    def logged(result: dict[str, Any]) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in result.items() if k != p.STEP)
        log.info("step %d/%d: %s", result[p.STEP], steps, shown)

    log.info("training trial %d's parameters for %d steps", best.number, steps)
    try:  # as a trial runs it: the same checks of every report and of the result
        metrics = run_objective(objective, params, context, Reporter(context.metrics, logged))
    except TrialFailed as exc:
        raise ConfigError(f"final training: {exc}") from None
    writers.write_best_params(
        out / "best_params.yaml", {"study_name": study_name, "best": best_entry(best)}
    )
    writers.write_json(
        out / "final_metrics.json",
        {
            "study_name": study_name,
            "trial": best.number,
            "max_steps": steps,
            "metrics": metrics,
            "study_values": best.values,
        },
    )
    adapter = out / "adapters" / f"trial_{best.number}"
    where = f"; adapter saved to {adapter}" if adapter.is_dir() else ""
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    print(f"trained trial {best.number}'s parameters for {steps} steps: {shown}{where}", flush=True)
    return metrics


def _stored_int(config: dict[str, Any], key: str, minimum: int, study_name: str) -> int:
    return stored_whole_number(config.get(key), f"study {study_name!r}", key, minimum)


def _stored_resources(value: Any, study_name: str) -> dict[str, float]:
    """The trials' CPU and GPU share from the stored config. A group's settings
    (``workers``, ``strategy``) are checked and left: train-best trains in one process."""
    from ugro_hpo.config.plan import STRATEGIES

    resources = {"cpu": 1.0, "gpu": 0.0}
    where = f"study {study_name!r}"
    for key, amount in (value or {}).items() if isinstance(value, dict) else [("", None)]:
        if key == "workers":
            workers = stored_whole_number(amount, where, "resources.workers", 1)
            if workers > 1:
                log.info("the study's trials ran as groups of %d workers; train-best trains in "
                         "one process", workers)  # fmt: skip
            continue
        if key == "strategy" and amount in STRATEGIES:
            continue
        if (
            key not in resources
            or isinstance(amount, bool)
            or not isinstance(amount, (int, float))
            or not 0 <= amount <= 1024
        ):
            raise ConfigError(
                f"{where}: stored resources are not valid; the study database may have been altered"
            )
        resources[key] = float(amount)
    return resources
