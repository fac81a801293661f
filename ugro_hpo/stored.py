"""Work with a study already in storage: analyse it, export its best parameters, train its
best configuration once more. Nothing here needs the run that made the study, only the
storage URL and the study name (the study keeps its search space and config as attributes).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.redact import redact_url

log = logging.getLogger("ugro_hpo")

CONFIG_ATTR = "ugro:config"
METADATA_ATTR = "ugro:metadata"
N_TRIALS_ATTR = "ugro:n_trials"
DEFAULT_STORAGE = "sqlite:///outputs/studies.db"


@dataclass
class StoredStudy:
    """A study loaded back with what it was run with."""

    study: Any
    space: Any
    config: dict[str, Any]
    storage: str

    @property
    def n_trials(self) -> int:
        return int(self.study.user_attrs.get(N_TRIALS_ATTR) or len(self.study.trials))


def remember_run(study: Any, plan: Any) -> None:
    """Keep with the study what a later analysis or final training needs (config redacted)."""
    from ugro_hpo.redact import redact_data

    study.set_user_attr(CONFIG_ATTR, json.loads(json.dumps(redact_data(plan.config), default=str)))
    study.set_user_attr(
        METADATA_ATTR, json.loads(json.dumps(dict(plan.search_space.metadata), default=str))
    )
    study.set_user_attr(N_TRIALS_ATTR, plan.n_trials)


def load(study_name: str, storage: str) -> StoredStudy:
    """The study and its search space, or a one-line error that names the study and storage."""
    import optuna

    from ugro_hpo.search_space import parse_search_space
    from ugro_hpo.storage import SPACE_ATTR, open_storage

    if "://" not in storage:
        raise ConfigError(f"--storage: {storage!r} is not a database URL (e.g. {DEFAULT_STORAGE})")
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"--storage: {storage} does not exist; run from the study's directory or pass --storage"
        )
    opened = open_storage(storage)
    names = sorted(
        s.study_name for s in optuna.get_all_study_summaries(opened, include_best_trial=False)
    )
    if study_name not in names:
        known = ", ".join(names[:10]) or "none"
        raise ConfigError(
            f"--study-name: no study {study_name!r} in {redact_url(storage)} (studies: {known})"
        )
    study = optuna.load_study(study_name=study_name, storage=opened)
    fingerprint = study.user_attrs.get(SPACE_ATTR)
    if not fingerprint:
        raise ConfigError(
            f"--study-name: study {study_name!r} was not made by ugro_hpo (no search space stored)"
        )
    space = parse_search_space(json.loads(fingerprint), f"study {study_name}")
    metadata = study.user_attrs.get(METADATA_ATTR) or {}
    if metadata:
        from dataclasses import replace

        space = replace(space, metadata=dict(metadata))
    return StoredStudy(study, space, dict(study.user_attrs.get(CONFIG_ATTR) or {}), storage)


def status_of(stored: StoredStudy) -> str:
    """complete, running (trials in flight), or incomplete (interrupted, stopped, time budget)."""
    from optuna.trial import TrialState

    from ugro_hpo.storage import finished_count

    if finished_count(stored.study) >= stored.n_trials:
        return "complete"
    if stored.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return "running"
    return "incomplete"


def analyze(study_name: str, storage: str, output_dir: Path | None) -> Path:
    """Rebuild summary.json, best_params.yaml, trials.csv and report/ from the storage."""
    from ugro_hpo.console import summary_table
    from ugro_hpo.study_files import summarize, write_study_files

    stored = load(study_name, storage)
    out = (
        output_dir
        or Path("outputs") / study_name / f"analysis_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    )
    config = stored.config
    facts = {
        "status": status_of(stored),
        "n_trials": stored.n_trials,
        "run_dir": str(out),
        "storage": redact_url(storage),
        "search_space": stored.space.source,
        "sampler": ((config.get("search") or {}).get("sampler") or {}).get("_target_"),
        "scheduler": (config.get("scheduler") or {}).get("_target_"),
    }
    result = write_study_files(
        stored.study, stored.space, summarize(stored.study, stored.space, facts), out
    )
    print(
        summary_table({**result.summary, "duration_s": None}, result.ordered[:5], stored.space),
        flush=True,
    )
    return out


def export_best(study_name: str, storage: str, output: Path) -> Path:
    """Write the best parameters (the first of the Pareto front for several objectives)."""
    from ugro_hpo import exports
    from ugro_hpo.results import best_entry, ranked, trial_records

    stored = load(study_name, storage)
    ordered = ranked(trial_records(stored.study, stored.space), stored.space)
    if not ordered:
        raise ConfigError(f"--study-name: study {study_name!r} has no complete trial yet")
    summary = {"study_name": study_name, "best": best_entry(ordered[0])}
    exports.write_best_params(output, summary)
    print(f"best parameters of study {study_name} (trial {ordered[0].number}) written to {output}")
    return output


def train_best(
    study_name: str, storage: str, output_dir: Path | None, max_steps: int | None
) -> dict[str, float]:
    """Train once more with the study's best parameters, in this process, and save the adapter.

    The objective, seed, evaluation schedule and resources are the study's own, so with the
    same ``max_steps`` the result reproduces the best trial's.
    """
    from ugro_hpo import exports
    from ugro_hpo.components import instantiate
    from ugro_hpo.objectives.base import TrialContext
    from ugro_hpo.results import best_entry, ranked, trial_records

    stored = load(study_name, storage)
    config = stored.config
    if not config.get("objective"):
        raise ConfigError(
            f"--study-name: study {study_name!r} has no stored config; rerun it once with this version"
        )
    ordered = ranked(trial_records(stored.study, stored.space), stored.space)
    if not ordered:
        raise ConfigError(f"--study-name: study {study_name!r} has no complete trial yet")
    best = ordered[0]
    steps = int(max_steps or config["max_steps"])
    if steps <= 0:
        raise ConfigError(f"--max-steps: must be > 0, got {steps}")
    out = output_dir or Path("outputs") / study_name / f"best_trial_{best.number}_{steps}_steps"
    out.mkdir(parents=True, exist_ok=True)
    spec = dict(config["objective"])
    if "save_adapter" in spec:
        spec.update(save_adapter=True, keep_adapters=1)
    objective = instantiate(spec, "objective")
    objective.prepare(config.get("resources") or {})
    context = TrialContext(
        number=best.number,
        seed=int(config["seed"]),
        max_steps=steps,
        eval_every=int(config["eval_every"]),
        metrics=tuple(stored.space.metric_names),
        resources=config.get("resources") or {},
        run_dir=str(out),
        metadata=dict(stored.space.metadata),
    )

    def report(step: int, **metrics: float) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        log.info("step %d/%d: %s", step, steps, shown)

    log.info("training trial %d's parameters for %d steps", best.number, steps)
    metrics = {
        k: float(v) for k, v in (objective(dict(best.params), report, context) or {}).items()
    }
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise ConfigError(f"final training: metric(s) {bad} are not finite")
    exports.write_best_params(
        out / "best_params.yaml", {"study_name": study_name, "best": best_entry(best)}
    )
    exports.write_atomic(
        out / "final_metrics.json",
        json.dumps(
            {
                "study_name": study_name,
                "trial": best.number,
                "max_steps": steps,
                "metrics": metrics,
                "study_values": best.values,
            },
            indent=2,
        )
        + "\n",
    )
    adapter = out / "adapters" / f"trial_{best.number}"
    where = f"; adapter saved to {adapter}" if adapter.is_dir() else ""
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    print(f"trained trial {best.number}'s parameters for {steps} steps: {shown}{where}", flush=True)
    return metrics
