"""The summary of a study, built from the Optuna storage alone: counts, the best trial (or the
Pareto front), importances, and the facts the caller knows (status, where things are, how the
study runs). The end of a run and `ugro hpo analyze` both build it here, from the same facts
(`optimize.stored_study.run_facts`), so a study analysed later gets the same summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from ugro_hpo.optimize import protocol as p
from ugro_hpo.results.records import TrialRecord
from ugro_hpo.space import SearchSpace


@dataclass
class Summary:
    """A study's summary (plain data for summary.json) and the records it was built from."""

    data: dict[str, Any]
    records: list[TrialRecord]
    ordered: list[TrialRecord]  # complete trials, best first


def summarize(study: optuna.Study, space: SearchSpace, facts: dict[str, Any]) -> Summary:
    """The summary of ``study`` with the caller's ``facts`` (``status``, ``n_trials`` and
    ``reason`` first, then anything else, in order)."""
    from ugro_hpo.results.importances import importances
    from ugro_hpo.results.records import best_entry, counts, pareto_front, ranked, trial_records
    from ugro_hpo.security.redaction import redact_data

    facts = dict(facts)
    records = trial_records(study, space)
    ordered = ranked(records, space)
    data: dict[str, Any] = {
        "study_name": study.study_name,
        "status": facts.pop("status"),
        "reason": facts.pop("reason", None),
        "n_trials": facts.pop("n_trials"),
        "finished": sum(r.state in p.RAN for r in records),
        "counts": counts(records),
        "objectives": [{"name": o.name, "direction": o.direction} for o in space.objectives],
        "best": best_entry(ordered[0]) if ordered else None,
        **facts,
    }
    if space.is_multi_objective:
        complete = [r for r in records if r.state == p.Outcome.COMPLETE]
        data["pareto_front"] = [best_entry(r) for r in pareto_front(complete, space)]
    data.update(_fidelity(records, data))
    resumed = {str(r.number): r.resumed_from_step for r in records if r.resumed_from_step}
    if resumed:  # trials that continued from an interrupted run's checkpoint, and its step
        data["resumed_from_step"] = resumed
    warm = _warm_start(study.user_attrs.get(p.STUDY_WARM_START))
    if warm:
        data["warm_start"] = warm
    data["importances"] = importances(study, space)
    return Summary(redact_data(data), records, ordered)


def _fidelity(records: list[TrialRecord], data: dict[str, Any]) -> dict[str, Any]:
    """The steps trained and the rung view, from the study's facts (`optimize.rung_steps`):
    ``rungs`` (text) becomes the view, ``max_steps`` a number."""
    from ugro_hpo.optimize.rung_steps import from_text
    from ugro_hpo.results.rung_view import fidelity_summary

    max_steps = str(data.pop("max_steps", "") or "")
    steps = from_text(data.pop("rungs", None))
    if not max_steps.isdigit() or len(max_steps) > 9:
        return {}
    return fidelity_summary(records, steps, int(max_steps))


def _warm_start(stored: Any) -> list[dict[str, Any]]:
    """What the study took from earlier ones (`optimize.warm_start`), as stored: data from a
    shared database, so only its expected shape is kept, in bounded sizes."""
    if not isinstance(stored, list):
        return []
    kept = []
    for entry in stored[:100]:
        if not isinstance(entry, dict):
            continue
        queued = entry.get("queued_trials")
        kept.append({
            "study": str(entry.get("study", ""))[:128],
            "storage": str(entry.get("storage", ""))[:300],
            "complete_trials": entry.get("complete_trials")
            if isinstance(entry.get("complete_trials"), int) else None,
            "queued_trials": [n for n in queued[:10_000] if isinstance(n, int)]
            if isinstance(queued, list) else [],
        })  # fmt: skip
    return kept
