"""Weights & Biases: one run per trial, grouped by study, offline-first.

Each trial's run is named ``trial-<n>``, grouped under the study name, tagged with the trial's
number and Ray trial id, and configured with the trial's hyperparameters plus the model,
dataset and budget (so W&B's parallel-coordinates and importance panels work). Metrics stream
as the trial reports them; a violated constraint becomes a tag, a metric and a summary field.

Without an API key, or when the server cannot be reached, runs are written offline under
``<outputs>/wandb/`` and the end of the study says how to upload them with ``wandb sync``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ugro_hpo.errors import ConfigError
from ugro_hpo.names import check_wandb_entity, check_wandb_project
from ugro_hpo.security.keys import wandb_api_key
from ugro_hpo.security.redaction import redact_data, redact_text
from ugro_hpo.tracking.tracker import StudyInfo, Tracker
from ugro_hpo.trial_events import TrialEnd, TrialResult, TrialStart

log = logging.getLogger(__name__)
MODES = {
    "online": "online",
    "run": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}
DEFAULT_BASE_URL = "https://api.wandb.ai"
MAX_TAG = 64


def login_saved() -> bool:
    """An API key saved by ``wandb login`` (in netrc)."""
    host = urlparse(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def server_reachable(timeout: float = 3.0) -> bool:
    """Can we open a connection to the W&B server at all (no credentials sent)?"""
    url = urlparse(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


class WandbTracker(Tracker):
    """Logs each trial as a W&B run, from the driver."""

    name = "wandb"

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        dir: str = "outputs",
        api_key_file: str | None = None,
    ) -> None:
        project = project or os.environ.get("WANDB_PROJECT")
        if not project:
            raise ConfigError(
                "wandb.project: set wandb.project=<name> (or WANDB_PROJECT) for W&B tracking"
            )
        self.project = check_wandb_project(project)
        entity = entity or os.environ.get("WANDB_ENTITY")
        self.entity = check_wandb_entity(entity) if entity else None
        requested = mode or os.environ.get("WANDB_MODE")
        if requested is not None and requested not in MODES:
            raise ConfigError(f"wandb.mode: {requested!r} is not one of online, offline, disabled")
        self.requested_mode = MODES[requested] if requested else None
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError(
                "tracking with W&B needs the wandb package: pip install 'ugro-hpo[wandb]'"
            )
        self.has_key = wandb_api_key(api_key_file) is not None
        self.dir = Path(dir).expanduser().resolve()
        self.mode = self.requested_mode or "offline"
        self.info: StudyInfo | None = None
        self.user_tags: list[str] = []
        self.runs: dict[str, Any] = {}
        self.offline_dirs: list[str] = []
        self.count = 0

    def location(self) -> str:
        where = f"{self.entity}/{self.project}" if self.entity else self.project
        return f"{where} ({self.mode}, {self.dir / 'wandb'})"

    def connect(self) -> None:
        """Choose the mode: as asked, else online only with a key and a reachable server."""
        if self.requested_mode == "online" and not server_reachable():
            raise ConnectionError(
                f"W&B server {os.environ.get('WANDB_BASE_URL', DEFAULT_BASE_URL)} is unreachable"
            )
        if self.requested_mode is None:
            if not (self.has_key or login_saved()):
                self.mode, reason = "offline", "no API key"
            elif not server_reachable():
                self.mode, reason = "offline", "server unreachable"
            else:
                self.mode, reason = "online", ""
            if reason:
                log.info(
                    "W&B runs are written offline (%s); upload them later with `wandb sync`", reason
                )
        self.dir.mkdir(parents=True, exist_ok=True)

    def study_started(self, info: StudyInfo) -> None:
        self.info = info
        self.user_tags = [f"{k}:{v}"[:MAX_TAG] for k, v in info.tags.items()]

    def trial_started(self, start: TrialStart) -> str:
        info = self.info
        assert info is not None
        config = {**start.params, **info.describe, "max_steps": info.max_steps, "study_name": info.study_name,
                  "trial_number": start.number}  # fmt: skip
        tags = [f"trial-{start.number}", f"trial_id-{start.trial_id}"[:MAX_TAG]]
        run = self._init("trial", f"trial-{start.number}", tags, config)
        self.runs[start.trial_id] = run
        self.count += 1
        return str(run.id)

    def _init(self, job_type: str, name: str, tags: list[str], config: dict[str, Any]) -> Any:
        """A run of this study's group, with our settings."""
        import wandb

        assert self.info is not None
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            group=self.info.study_name[:128],
            job_type=job_type,
            name=name,
            tags=[*tags, *self.user_tags],
            config=redact_data(config),
            dir=str(self.dir),
            mode=self.mode,  # type: ignore[arg-type]  # one of MODES' values
            reinit="create_new",
            # No console capture and no run metadata: the driver's command line may hold secrets.
            settings=wandb.Settings(
                silent=True,
                console="off",
                init_timeout=60,
                x_disable_meta=True,
                disable_code=True,
                disable_git=True,
            ),
        )
        if self.mode == "offline":
            self.offline_dirs.append(str(Path(run.dir).parent))
        return run

    def link(self, trial_id: str, run_ids: dict[str, str]) -> None:
        others = {f"{name}_run_id": run_id for name, run_id in run_ids.items() if name != self.name}
        self.runs[trial_id].config.update(others, allow_val_change=True)

    def trial_result(self, result: TrialResult) -> None:
        self.runs[result.trial_id].log(result.metrics, step=result.step)

    def trial_finished(self, end: TrialEnd) -> None:
        run = self.runs.pop(end.trial_id)
        try:
            summary: dict[str, Any] = {
                "state": end.state,
                **{f"final_{k}": v for k, v in end.metrics.items()},
            }
            if end.last_step is not None:
                summary["last_step"] = end.last_step
            if end.rung is not None:
                summary["rung"] = end.rung
            if end.violation:
                run.tags = (*run.tags, "constraint_violation")
                run.log({"constraint_violation": 1.0}, step=max(end.last_step or 0, 0))
                summary["violated_constraint"] = redact_text(end.violation)
            if end.error:
                summary["error"] = redact_text(end.error)
            run.summary.update(summary)
        finally:
            run.finish(exit_code=1 if end.state == "failed" else 0)

    def study_finished(self, summary: dict[str, Any], files: list[Path]) -> list[str]:
        self.close()
        if self.mode != "disabled" and self.info is not None:
            self._log_study(summary, files)
        if self.mode == "offline" and self.count:
            return [f"W&B: {self.count} run(s) of trials and a study run written offline under {self.dir / 'wandb'}; upload them with: "
                    f"wandb sync {self.dir / 'wandb'}/offline-run-*"]  # fmt: skip
        return [
            f"W&B: {self.count} run(s) of trials and a study run in project {self.location()}, group {summary.get('study_name')}"
        ]

    def _log_study(self, summary: dict[str, Any], files: list[Path]) -> None:
        """One run per study (job type ``study``): best values, counts, importances, the report's
        plots as images, and the study's files as a ``report`` artifact."""
        import wandb

        info = self.info
        assert info is not None
        config = {**info.describe, **info.settings, "max_steps": info.max_steps, "n_trials": info.n_trials,
                  "sampler": info.sampler, "scheduler": info.scheduler, "search_space": info.search_space}  # fmt: skip
        run = self._init("study", f"study-{info.study_name}"[:128], ["study"], config)
        try:
            best = summary.get("best") or {}
            goals = [o["name"] for o in summary.get("objectives") or []]
            values: dict[str, Any] = {
                f"best_{k}": v for k, v in (best.get("metrics") or {}).items() if k in goals
            }
            values.update({f"trials_{k}": v for k, v in (summary.get("counts") or {}).items()})
            values.update(status=summary.get("status"), best_trial=best.get("trial"))
            for metric, scores in (summary.get("importances") or {}).items():
                values.update({f"importance/{metric}/{k}": v for k, v in scores.items()})
            run.summary.update(values)
            plots = [p for d in files if d.is_dir() for p in sorted(d.glob("*.png"))]
            if plots:
                run.log({f"report/{p.stem}": wandb.Image(str(p)) for p in plots})
            artifact = wandb.Artifact(f"report-{info.study_name}"[:128], type="report")
            with artifact.new_file("summary.json", mode="w", encoding="utf-8") as file:
                json.dump(redact_data(summary), file, indent=2, default=str)
            for path in files:  # file by file: add_dir would print to our console
                for item in sorted(path.iterdir()) if path.is_dir() else [path]:
                    if item.is_file():
                        name = f"{path.name}/{item.name}" if path.is_dir() else item.name
                        artifact.add_file(str(item), name=name)
            run.log_artifact(artifact)
        finally:
            run.finish()

    def close(self) -> None:
        """Finish every run still open (an interrupted or failed study)."""
        for trial_id in list(self.runs):
            self.runs.pop(trial_id).finish(exit_code=1)
