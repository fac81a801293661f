"""MLflow: one parent run per study, one nested child run per trial.

The parent carries the study (tags: study name, sampler, scheduler, search space; params: the
model, dataset, budget and fixed settings) and, at the end, the best value and the study's
files as artifacts. Each trial's child run carries its sampled parameters, its metrics at every
reported step, and tags for its trial id, number and final state (plus the violated constraint
for an infeasible trial). The parent's id is stored with the Optuna study, so a continued study
logs into the same parent and no trial is ever logged twice.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

from ugro_hpo.names import check_mlflow_experiment
from ugro_hpo.optimize import protocol as p
from ugro_hpo.process_policy import MLFLOW_CLIENT_ENV, set_defaults
from ugro_hpo.security.redaction import redact_data, redact_text, redact_url
from ugro_hpo.tracking.tracker import StudyInfo, Tracker
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart

# A tracking server that stops answering must not stall a study for minutes of retries, and
# our summary says where the runs are (MLflow would print two links per finished run).
_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "infeasible": "FINISHED", "failed": "FAILED"}
MAX_TAG = 5000
MAX_PARAM = 6000


def _metric(key: str, value: float, step: int) -> Any:
    from mlflow.entities import Metric

    return Metric(key=key, value=float(value), timestamp=int(time.time() * 1000), step=int(step))


def _param_value(value: Any) -> str:
    """MLflow params are strings; lists and dicts are written out explicitly, secrets scrubbed."""
    text = (
        value
        if isinstance(value, str)
        else repr(value)
        if not isinstance(value, (int, float, bool))
        else str(value)
    )
    return redact_text(text)[:MAX_PARAM]


def _tags(tags: dict[str, Any]) -> dict[str, str]:
    """Tag values with every secret we know of scrubbed (a search-space path can hold one)."""
    return {key: redact_text(str(value))[:MAX_TAG] for key, value in redact_data(tags).items()}


_RUN_ID = re.compile(r"[0-9a-f]{32}")


class MlflowTracker(Tracker):
    """Logs a study to MLflow from the driver (workers need no tracking URI)."""

    name = "mlflow"

    def __init__(
        self, tracking_uri: str, experiment_name: str, artifact_location: str | None = None
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = check_mlflow_experiment(experiment_name)
        self.artifact_location = artifact_location
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.runs: dict[str, str] = {}  # Ray trial id -> child run id
        self.study_name = ""
        self.user_tags: dict[str, str] = {}
        self._parent_open = False

    def location(self) -> str:
        return redact_url(self.tracking_uri)

    def connect(self) -> None:
        set_defaults(MLFLOW_CLIENT_ENV)
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its schema-migration chatter

        self._refuse_planted_links()
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(
                self.experiment_name, artifact_location=self._artifact_uri()
            )
        else:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            self.experiment_id = experiment.experiment_id

    def _refuse_planted_links(self) -> None:
        """The embedded store (its database, and the artifacts folder beside it under the
        outputs folder) is never written through a planted link (`security.paths`)."""
        from ugro_hpo.security.paths import refuse_linked_database, refuse_links

        refuse_linked_database(self.tracking_uri, "mlflow.tracking_uri")
        folder = self._artifact_folder()
        if folder is not None and self.artifact_location:
            location = Path(self.artifact_location).expanduser()
            refuse_links(location.parent, location / folder, "mlflow artifact_location")

    def _artifact_folder(self) -> str | None:
        remote = self.tracking_uri.startswith(("http://", "https://", "databricks"))
        if not self.artifact_location or remote:
            return None
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.experiment_name)

    def _artifact_uri(self) -> str | None:
        """Artifacts beside a local store; a tracking server decides for itself."""
        folder = self._artifact_folder()
        if folder is None or not self.artifact_location:
            return None
        return (Path(self.artifact_location).expanduser().resolve() / folder).as_uri()

    def _parent_key(self) -> str:
        digest = hashlib.sha256(self.tracking_uri.encode()).hexdigest()[:10]
        return f"{p.STUDY_MLFLOW_PARENT}{digest}"

    def study_started(self, info: StudyInfo) -> None:
        from mlflow.entities import Param, RunTag

        from ugro_hpo.optimize.storage import set_study_attr

        self.study_name = info.study_name
        self.user_tags = {f"ugro.tag.{k}": v for k, v in info.tags.items()}
        stored = info.study.user_attrs.get(self._parent_key())
        # A run id read from a shared database goes into a search filter below: it must be one.
        if isinstance(stored, str) and _RUN_ID.fullmatch(stored) and self._usable(stored):
            self.parent_id = stored
            self.client.update_run(stored, status="RUNNING")
            self._close_stale_children(info.study)
        else:
            tags = {
                "ugro.study_name": info.study_name,
                "ugro.sampler": info.sampler,
                "ugro.scheduler": info.scheduler,
                "ugro.search_space": info.search_space,
                "ugro.role": "study",
                **self.user_tags,
            }
            run = self.client.create_run(
                self.experiment_id, run_name=info.study_name, tags=_tags(tags)
            )
            self.parent_id = run.info.run_id
            set_study_attr(info.study, self._parent_key(), self.parent_id)
        self._parent_open = True
        params = {
            **info.describe,
            "max_steps": info.max_steps,
            "n_trials": info.n_trials,
            **info.settings,
        }
        logged = self.client.get_run(self.parent_id).data.params
        new = [Param(k, _param_value(v)) for k, v in params.items() if k not in logged]
        changed = [RunTag(f"ugro.changed.{k}", _param_value(v)[:MAX_TAG]) for k, v in params.items()
                   if k in logged and logged[k] != _param_value(v)]  # fmt: skip
        for start in range(0, len(new), 90):
            self.client.log_batch(self.parent_id, params=new[start : start + 90])
        if changed:
            self.client.log_batch(self.parent_id, tags=changed)

    def _usable(self, run_id: str) -> bool:
        try:
            run = self.client.get_run(run_id)
        except Exception:
            return False
        return (
            run.info.lifecycle_stage != "deleted" and run.info.experiment_id == self.experiment_id
        )

    def _close_stale_children(self, study: Any) -> None:
        """Close the child runs left RUNNING by a study that died, in the state the storage holds:
        a trial stored as finished just before the crash keeps its result; the others failed."""
        from mlflow.entities import RunTag

        from ugro_hpo.optimize.protocol import (
            TRIAL_LAST_STEP,
            TRIAL_METRICS,
            TRIAL_VIOLATION,
            outcome_of,
        )

        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}' and attributes.status = 'RUNNING'",
        )
        trials = study.get_trials(deepcopy=False)
        for run in runs:
            number = int(run.data.tags.get("ugro.trial_number", -1))
            trial = trials[number] if 0 <= number < len(trials) else None
            state = str(outcome_of(trial)) if trial is not None else "failed"
            if state in ("complete", "pruned", "infeasible"):
                metrics = dict(trial.user_attrs.get(TRIAL_METRICS) or {})  # type: ignore[union-attr]
                step = int(trial.user_attrs.get(TRIAL_LAST_STEP) or 0)  # type: ignore[union-attr]
                violation = trial.user_attrs.get(TRIAL_VIOLATION)  # type: ignore[union-attr]
                tags = [RunTag("ugro.state", state)]
                if violation:
                    tags.append(
                        RunTag("ugro.violated_constraint", redact_text(violation)[:MAX_TAG])
                    )
                self.client.log_batch(
                    run.info.run_id,
                    metrics=[_metric(k, v, step) for k, v in metrics.items()],
                    tags=tags,
                )
                self.client.set_terminated(run.info.run_id, status=_STATUS[state])
                continue
            self.client.set_tag(run.info.run_id, "ugro.state", "failed")
            self.client.set_tag(
                run.info.run_id, "ugro.error", "interrupted: the study stopped while it ran"
            )
            self.client.set_terminated(run.info.run_id, status="KILLED")

    def trial_started(self, start: TrialStart) -> str:
        from mlflow.entities import Param

        tags = {
            "mlflow.parentRunId": self.parent_id,
            "ugro.study_name": self.study_name,
            "ugro.trial_id": start.trial_id,
            "ugro.trial_number": str(start.number),
            "ugro.role": "trial",
            **self.user_tags,
        }
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{start.number}", tags=_tags(tags)
        )
        run_id = run.info.run_id
        self.runs[start.trial_id] = run_id
        if start.params:
            params = redact_data(start.params)
            self.client.log_batch(
                run_id, params=[Param(k, _param_value(v)) for k, v in params.items()]
            )
        return str(run_id)

    def link(self, trial_id: str, run_ids: dict[str, str]) -> None:
        for name, run_id in run_ids.items():
            if name != self.name:
                self.client.set_tag(self.runs[trial_id], f"ugro.{name}_run_id", run_id)

    def trial_result(self, result: TrialResult) -> None:
        self.client.log_batch(
            self.runs[result.trial_id],
            metrics=[_metric(k, v, result.step) for k, v in result.metrics.items()],
        )

    def trial_finished(self, end: TrialEnd) -> None:
        from mlflow.entities import RunTag

        run_id = self.runs.pop(end.trial_id)
        tags = [RunTag("ugro.state", end.state)]
        if end.last_step is not None:
            tags.append(RunTag("ugro.last_step", str(end.last_step)))
        if end.rung is not None:
            tags.append(RunTag("ugro.rung", str(end.rung)))
        metrics = []
        if end.violation:
            tags.append(RunTag("ugro.violated_constraint", redact_text(end.violation)[:MAX_TAG]))
            metrics.append(_metric("constraint_violation", 1.0, 0))
        if end.error:
            tags.append(RunTag("ugro.error", redact_text(end.error)[:MAX_TAG]))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, status=_STATUS.get(end.state, "FINISHED"))

    def study_finished(self, summary: dict[str, Any], files: list[Path]) -> list[str]:
        from mlflow.entities import RunTag

        best = summary.get("best")
        if best:
            goals = [o["name"] for o in summary.get("objectives") or []]
            metrics = [
                _metric(f"best_{k}", v, 0)
                for k, v in best["metrics"].items()
                if k in goals and isinstance(v, (int, float))
            ]
            self.client.log_batch(
                self.parent_id,
                metrics=metrics,
                tags=[RunTag("ugro.best_trial", str(best["trial"]))],
            )
        counts = summary.get("counts", {})
        self.client.log_batch(
            self.parent_id, metrics=[_metric(f"trials_{k}", v, 0) for k, v in counts.items()]
        )
        self.client.log_dict(self.parent_id, redact_data(summary), "summary.json")
        for path in files:
            if path.is_dir():
                self.client.log_artifacts(self.parent_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(self.parent_id, str(path))
        self.client.set_terminated(self.parent_id, status="FINISHED")
        self._parent_open = False
        return [
            f"MLflow: run {self.parent_id} (experiment {self.experiment_name!r}) at {self.location()}"
        ]

    def close(self) -> None:
        """Runs still open when the study ends (an interrupt) are closed as killed."""
        if self.client is None:
            return
        for trial_id in list(self.runs):
            run_id = self.runs.pop(trial_id)
            self.client.set_tag(run_id, "ugro.state", "failed")
            self.client.set_terminated(run_id, status="KILLED")
        if self._parent_open and self.parent_id:
            self._parent_open = False
            self.client.set_terminated(self.parent_id, status="KILLED")
