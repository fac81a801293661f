"""Credentials come from the person running the command (environment, `.env`, key files),
never from a config, a preset or an override, however they are written; the refusal says
where the credential belongs and never echoes it."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from conftest import run_cli

KEY = "k" * 30 + secrets.token_hex(6)
BY_OVERRIDE = [
    f"wandb.api_key={KEY}",
    f"+wandb.api_key={KEY}",
    f"++wandb.apiKey={KEY}",
    f"+mlflow.password={KEY}",
    f"+ray.auth_token={KEY}",
    f"hydra.job.env_set.WANDB_API_KEY={KEY}",
    f"++hydra.job.env_set.MLFLOW_TRACKING_PASSWORD={KEY}",
    f"+hydra.job.env_set.RAY_AUTH_TOKEN={KEY}",
    f"+hydra.job.env_set.HF_TOKEN={KEY}",
    f"+hydra.job.env_set.AWS_SECRET_ACCESS_KEY={KEY}",
    f"++hydra.job.env_set.DATABRICKS_TOKEN={KEY}",
    f"+hydra.job.env_set.OPENAI_API_KEY={KEY}",
    f"+hydra.job.env_set.PGPASSWORD={KEY}",
]
BY_PRESET = {
    "wandb.api_key in a preset": f"wandb:\n  api_key: {KEY}\n",
    "mlflow.password in a preset": f"mlflow:\n  password: {KEY}\n",
    "env_set.WANDB_API_KEY in a preset": f"hydra:\n  job:\n    env_set:\n      WANDB_API_KEY: {KEY}\n",
    "env_set.wandb_api_key in a preset": f"hydra:\n  job:\n    env_set:\n      wandb_api_key: {KEY}\n",
    **{
        f"env_set.{name} in a preset": f"hydra:\n  job:\n    env_set:\n      {name}: {KEY}\n"
        for name in (
            "HF_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "DATABRICKS_TOKEN",
            "GITHUB_TOKEN",
            "AWS_SESSION_TOKEN",
            "db_password",
        )
    },
}
QUICK = ["objective=synthetic", "search_space=quadratic", "tracking=none", "n_trials=1"]


def _refused(result, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert "is refused, as credentials are never read from a config" in lines[0]
    assert KEY not in result.stdout + result.stderr
    assert not (tmp_path / "outputs").exists()
    return lines[0]


@pytest.mark.parametrize("override", BY_OVERRIDE, ids=[o.split("=")[0] for o in BY_OVERRIDE])
def test_a_credential_given_as_an_override_is_refused(tmp_path: Path, override: str) -> None:
    line = _refused(run_cli(*QUICK, override, cwd=tmp_path), tmp_path)
    assert "use " in line and ("environment" in line or "_file" in line)


@pytest.mark.parametrize("case", sorted(BY_PRESET))
def test_a_credential_in_a_preset_is_refused(tmp_path: Path, case: str) -> None:
    conf = tmp_path / "shared_conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "colleague.yaml").write_text("# @package _global_\n" + BY_PRESET[case])
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli(f"hydra.searchpath=[file://{conf}]", "+experiment=colleague", *QUICK, cwd=work)
    _refused(result, work)


def test_the_refusal_also_holds_under_multirun(tmp_path: Path) -> None:
    result = run_cli(
        "-m", *QUICK, f"hydra.job.env_set.WANDB_API_KEY={KEY}", "seed=1,2", cwd=tmp_path
    )
    _refused(result, tmp_path)


def test_env_set_may_still_set_variables_that_are_not_secrets(tmp_path: Path) -> None:
    result = run_cli(*QUICK, "+hydra.job.env_set.TOKENIZERS_PARALLELISM=false", "dry_run=true",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
