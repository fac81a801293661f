"""Read a study back from storage: one record per trial, counts, the best trial or Pareto front.

Everything here comes from the Optuna storage, so it is the same whether the study ran in this
process, in another one, or was interrupted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna

from ugro_hpo.optimize import protocol as p
from ugro_hpo.space import SearchSpace

STATES = tuple(o.value for o in p.Outcome)


@dataclass
class TrialRecord:
    """What one trial did, in plain values."""

    number: int
    state: str
    params: dict[str, Any]
    values: dict[str, float | None]
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    last_step: int | None = None
    violation: str | None = None
    error: str | None = None
    resumed_from_step: int | None = None  # a retry that continued from an earlier checkpoint

    def row(self, parameter_names: list[str], metric_names: list[str]) -> dict[str, Any]:
        """A flat row for trials.csv."""
        row: dict[str, Any] = {"number": self.number, "state": self.state}
        row.update({name: self.params.get(name, "") for name in parameter_names})
        row.update(
            {name: _blank(self.metrics.get(name, self.values.get(name))) for name in metric_names}
        )
        row.update(
            duration_s=_blank(None if self.duration_s is None else round(self.duration_s, 3)),
            last_step=_blank(self.last_step),
            resumed_from_step=_blank(self.resumed_from_step),
            violation=self.violation or "",
            error=self.error or "",
        )
        return row


def _blank(value: Any) -> Any:
    return "" if value is None else value


def trial_records(study: optuna.Study, space: SearchSpace) -> list[TrialRecord]:
    """Every trial of the study, in order (an infeasible one with no values: it never ran)."""
    names = space.metric_names
    records = []
    for trial in study.get_trials(deepcopy=False):
        outcome = p.outcome_of(trial)
        values: dict[str, float | None] = dict.fromkeys(names)
        if trial.values is not None and outcome == p.Outcome.COMPLETE:
            values.update(zip(names, trial.values, strict=False))
        elif outcome == p.Outcome.PRUNED and trial.intermediate_values and len(names) == 1:
            values[names[0]] = trial.intermediate_values[max(trial.intermediate_values)]
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        attrs = trial.user_attrs
        error = attrs.get(p.TRIAL_ERROR) or (
            p.NO_HEARTBEAT if outcome == p.Outcome.FAILED else None
        )
        records.append(
            TrialRecord(
                number=trial.number,
                state=outcome.value,
                params=dict(trial.params),
                values=values,
                metrics=dict(attrs.get(p.TRIAL_METRICS) or {}),
                duration_s=duration,
                last_step=attrs.get(p.TRIAL_LAST_STEP),
                violation=attrs.get(p.TRIAL_VIOLATION) or None,
                error=error,
                resumed_from_step=_whole(attrs.get(p.TRIAL_RESUMED_FROM_STEP)),
            )
        )
    return records


def _whole(value: Any) -> int | None:
    """A stored step as a whole number, or None (a shared study database may hold anything)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def counts(records: list[TrialRecord]) -> dict[str, int]:
    """How many trials ended in each state."""
    tally = Counter(r.state for r in records)
    return {state: tally.get(state, 0) for state in STATES}


def ranked(records: list[TrialRecord], space: SearchSpace) -> list[TrialRecord]:
    """Complete trials, best first (for several objectives: Pareto front first, then by weights)."""
    complete = [r for r in records if r.state == "complete"]
    front = {r.number for r in pareto_front(complete, space)}
    return sorted(complete, key=lambda r: (r.number not in front, _score(r, space)))


def _score(record: TrialRecord, space: SearchSpace) -> float:
    """Weighted, direction-signed sum of objective values; lower is better."""
    total = 0.0
    for objective in space.objectives:
        value = record.values.get(objective.name)
        if value is None:
            return float("inf")
        sign = 1.0 if objective.direction == "minimize" else -1.0
        total += objective.weight * sign * value
    return total


def pareto_front(records: list[TrialRecord], space: SearchSpace) -> list[TrialRecord]:
    """Complete trials no other trial beats on every objective."""
    signs = [1.0 if o.direction == "minimize" else -1.0 for o in space.objectives]
    points = {
        r.number: [
            s * (r.values.get(o.name) or 0.0) for s, o in zip(signs, space.objectives, strict=True)
        ]
        for r in records
    }

    def dominated(a: list[float]) -> bool:
        return any(
            all(x <= y for x, y in zip(b, a, strict=True)) and b != a for b in points.values()
        )

    return [r for r in records if not dominated(points[r.number])]


def best_entry(record: TrialRecord) -> dict[str, Any]:
    """The summary's description of a good trial."""
    entry = {
        "trial": record.number,
        "params": record.params,
        "metrics": {**{k: v for k, v in record.values.items() if v is not None}, **record.metrics},
    }
    if record.resumed_from_step:
        entry["resumed_from_step"] = record.resumed_from_step
    return entry
