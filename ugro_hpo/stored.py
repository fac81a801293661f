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
from ugro_hpo.search_space import parse_search_space
from ugro_hpo.security.limits import check_data, load_json
from ugro_hpo.security.redaction import redact_url
from ugro_hpo.security.stored_objective import build_objective, check_objective

log = logging.getLogger("ugro_hpo")

CONFIG_ATTR = "ugro:config"
METADATA_ATTR = "ugro:metadata"
N_TRIALS_ATTR = "ugro:n_trials"
FACTS_ATTR = "ugro:facts"
DEFAULT_STORAGE = "sqlite:///outputs/studies.db"


@dataclass
class StoredStudy:
    """A study loaded back with what it was run with, every stored value checked."""

    study: Any
    space: Any
    config: dict[str, Any]
    objective: dict[str, Any]  # the stored objective section, checked against the allow-list
    facts: dict[str, str]  # what the run recorded about itself (sampler, scheduler)
    storage: str
    n_trials: int


def remember_run(study: Any, plan: Any) -> None:
    """Keep with the study what a later analysis or final training needs (config redacted)."""
    from ugro_hpo.storage import set_study_attr

    set_study_attr(study, CONFIG_ATTR, json.loads(json.dumps(plan.config, default=str)))
    set_study_attr(
        study, METADATA_ATTR, json.loads(json.dumps(dict(plan.search_space.metadata), default=str))
    )
    set_study_attr(study, N_TRIALS_ATTR, plan.n_trials)
    set_study_attr(study, FACTS_ATTR, run_facts(plan))


def run_facts(plan: Any) -> dict[str, str]:
    """Facts about how a study runs that its summary reports, the same from the run and later."""
    return {"sampler": plan.sampler_name, "scheduler": str(plan.scheduler["_target_"])}


def load(study_name: str, storage: str) -> StoredStudy:
    """The study and its search space, or a one-line error that names the study and storage.

    Everything read here comes from a database other drivers can write: names are checked by
    the rules for names given on the command line, sizes are bounded, the stored config's
    objective is checked against the allow-list, and nothing in it is imported or called.
    """
    import optuna

    from ugro_hpo.naming import check_path_name
    from ugro_hpo.storage import SPACE_ATTR, open_storage, untrusted_read

    check_path_name(study_name, "--study-name")
    if "://" not in storage:
        raise ConfigError(f"--storage: {storage!r} is not a database URL (e.g. {DEFAULT_STORAGE})")
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"--storage: {storage} does not exist; run from the study's directory or pass --storage"
        )
    opened = open_storage(storage)
    where = f"study {study_name!r}"
    with untrusted_read(where):
        names = sorted(optuna.get_all_study_names(opened))
        if study_name not in names:
            shown = [n for n in names if _is_safe_name(n)]
            known = ", ".join(shown[:10]) or "none"
            hidden = len(names) - len(shown)
            if hidden:
                known += f" and {hidden} with names that are not valid study names"
            raise ConfigError(
                f"--study-name: no study {study_name!r} in {redact_url(storage)} (studies: {known})"
            )
        study = optuna.load_study(study_name=study_name, storage=opened)
        attrs = dict(study.user_attrs)
    fingerprint = attrs.get(SPACE_ATTR)
    if not fingerprint:
        raise ConfigError(
            f"--study-name: study {study_name!r} was not made by ugro_hpo (no search space stored)"
        )
    space_data = load_json(fingerprint, f"{where}: stored search space")
    space = parse_search_space(space_data, f"study {study_name}")
    metadata = _stored_mapping(attrs.get(METADATA_ATTR), f"{where}: stored metadata")
    if metadata:
        from dataclasses import replace

        space = replace(space, metadata=metadata)
    config = _stored_mapping(attrs.get(CONFIG_ATTR), f"{where}: stored config")
    objective = check_objective(config) if config else {}
    facts = _stored_mapping(attrs.get(FACTS_ATTR), f"{where}: stored facts")
    return StoredStudy(
        study=study,
        space=space,
        config=config,
        objective=objective,
        facts={k: _plain_text(facts.get(k)) for k in ("sampler", "scheduler") if facts.get(k)},
        storage=storage,
        n_trials=_stored_count(attrs.get(N_TRIALS_ATTR), len(study.trials), where),
    )


def _is_safe_name(name: str) -> bool:
    from ugro_hpo.naming import check_path_name

    try:
        check_path_name(name, "study")
    except ConfigError:
        return False
    return True


def _stored_mapping(value: Any, label: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{label}: is not a mapping; the study database may have been altered")
    check_data(value, label)
    return value


def _stored_count(value: Any, default: int, where: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**7:
        raise ConfigError(
            f"{where}: stored n_trials {str(value)[:40]!r} is not a whole number between 1 and "
            "10,000,000; the study database may have been altered"
        )
    return value


def _plain_text(value: Any) -> str:
    """A stored name shown to a person: printable ASCII, short."""
    text = "".join(c for c in str(value) if 32 <= ord(c) < 127)
    return text[:200]


def status_of(stored: StoredStudy) -> str:
    """complete, running (trials in flight), or incomplete (interrupted, stopped, time budget)."""
    from optuna.trial import TrialState

    from ugro_hpo.storage import finished_count

    if finished_count(stored.study) >= stored.n_trials:
        return "complete"
    if stored.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return "running"
    return "incomplete"


def default_output(study_name: str, leaf: str) -> Path:
    """``outputs/<study>/<leaf>``, refused if a link there would lead outside ``outputs/``."""
    from ugro_hpo.naming import check_path_name

    root = Path("outputs")
    path = root / check_path_name(study_name, "--study-name") / leaf
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(
            f"{root / study_name} leads outside {root}/ (a symbolic link?); remove it or pass "
            "--output-dir"
        )
    return path


def analyze(study_name: str, storage: str, output_dir: Path | None) -> Path:
    """Rebuild summary.json, best_params.yaml, trials.csv and report/ from the storage."""
    from ugro_hpo.console import summary_table
    from ugro_hpo.study_files import summarize, write_study_files

    stored = load(study_name, storage)
    out = output_dir or default_output(study_name, f"analysis_{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    facts = {
        "status": status_of(stored),
        "n_trials": stored.n_trials,
        "run_dir": str(out),
        "storage": redact_url(storage),
        "search_space": stored.space.source,
        "sampler": stored.facts.get("sampler"),
        "scheduler": stored.facts.get("scheduler"),
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
    from ugro_hpo import exports
    from ugro_hpo.objectives.base import TrialContext
    from ugro_hpo.results import best_entry, ranked, trial_records

    stored = load(study_name, storage)
    config = stored.config
    if not stored.objective:
        raise ConfigError(
            f"--study-name: study {study_name!r} has no stored config; rerun it once with this version"
        )
    ordered = ranked(trial_records(stored.study, stored.space), stored.space)
    if not ordered:
        raise ConfigError(f"--study-name: study {study_name!r} has no complete trial yet")
    best = ordered[0]
    if max_steps is not None and max_steps <= 0:
        raise ConfigError(f"--max-steps: must be > 0, got {max_steps}")
    steps = max_steps or _stored_int(config, "max_steps", 1, study_name)
    seed = _stored_int(config, "seed", 0, study_name)
    eval_every = _stored_int(config, "eval_every", 1, study_name)
    resources = _stored_resources(config.get("resources"), study_name)
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


def _stored_int(config: dict[str, Any], key: str, minimum: int, study_name: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 10**7:
        raise ConfigError(
            f"study {study_name!r}: stored {key} {str(value)[:40]!r} is not a whole number between "
            f"{minimum} and 10,000,000; the study database may have been altered"
        )
    return value


def _stored_resources(value: Any, study_name: str) -> dict[str, float]:
    resources = {"cpu": 1.0, "gpu": 0.0}
    for key, amount in (value or {}).items() if isinstance(value, dict) else [("", None)]:
        if (
            key not in resources
            or isinstance(amount, bool)
            or not isinstance(amount, (int, float))
            or not 0 <= amount <= 1024
        ):
            raise ConfigError(
                f"study {study_name!r}: stored resources are not valid; the study database may "
                "have been altered"
            )
        resources[key] = float(amount)
    return resources
