"""Text that comes back from a trial is hostile: a study whose trials print, log and fail with
every kind of secret leaves none of them in the console or in any file of the run, the study
database, MLflow, W&B or Ray (its experiment state and its worker logs)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from attack_support import files_containing

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_a_trial_s_error_text_leaks_no_secret_anywhere(tmp_path: Path) -> None:
    planted = {
        "after_label": "lbl-" + secrets.token_hex(8),  # known to nobody but the trial
        "from_env": "env-" + secrets.token_hex(8),
        "from_dotenv": "dot-" + secrets.token_hex(8),
        "from_env_set": "set-" + secrets.token_hex(8),
        "from_config": "cfg-" + secrets.token_hex(8),
    }
    markers = Path(os.environ["UGRO_TEST_MARKERS"])
    (markers / "planted.json").write_text(json.dumps(planted))
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f"SERVICE_PART={planted['from_dotenv']}\n")
    ray_tmp = Path(tempfile.mkdtemp(prefix="r"))  # short: Ray's socket paths have a length limit
    env = {**os.environ, "MY_SERVICE_PASSWORD": planted["from_env"], "RAY_TMPDIR": str(ray_tmp),
           "WANDB_MODE": "offline"}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ugro_hpo", "objective=custom", "objective.fn=fixture_objectives:leaks_secrets",
             "search_space=quadratic", "tracking=dual", "wandb.project=attack", "n_trials=2", "max_steps=1",
             "eval_every=1", "scheduler=fifo", "max_consecutive_failures=2", "verbose=1", "report=false",
             f"+hydra.job.env_set.HF_TOKEN={planted['from_env_set']}", f"+tags.api_token={planted['from_config']}"],
            cwd=work, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        values = list(planted.values())
        console = result.stdout + result.stderr
        assert result.returncode == 3, console[-3000:]  # every trial failed: the study stopped
        assert "login failed: password=***" in console  # the stop reason, scrubbed
        assert [v[:4] for v in values if v in console] == []
        outputs = work / "outputs"
        for store in ("studies.db", "mlflow.db", "wandb", "ray"):
            assert (outputs / store).exists(), store
        assert files_containing(outputs, values) == []
        worker_logs = list(ray_tmp.glob("**/logs/worker-*"))
        assert worker_logs and files_containing(ray_tmp, values) == []
        assert any(b"retrying with" in p.read_bytes() for p in worker_logs)  # the logs were read
        errors = (next(outputs.glob("ugro-demo/*/trials.csv"))).read_text()
        assert "login failed: password=***" in errors
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
        (markers / "planted.json").unlink(missing_ok=True)
