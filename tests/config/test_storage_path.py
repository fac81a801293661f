"""ray.storage_path: where Ray Tune keeps a study's results and trial checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ugro_hpo.config.plan import plan_and_parts

SYNTHETIC = ["objective=synthetic", "search_space=quadratic", "tracking=none", "study_name=s"]


def _plan(compose: Any, tmp_path: Path, *overrides: str) -> Any:
    return plan_and_parts(compose(*SYNTHETIC, *overrides), tmp_path / "run")[0]


def test_by_default_under_the_outputs(compose: Any, tmp_path: Path) -> None:
    plan = _plan(compose, tmp_path)
    assert plan.ray_storage == str(tmp_path / "outputs" / "ray" / "s") == str(plan.ray_dir)


def test_a_shared_folder_is_made_absolute(compose: Any, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = _plan(compose, tmp_path, "ray.storage_path=shared/ray")
    assert plan.ray_storage == str(tmp_path / "shared" / "ray" / "s") == str(plan.ray_dir)


def test_a_bucket_is_passed_to_ray_as_a_uri(compose: Any, tmp_path: Path) -> None:
    plan = _plan(compose, tmp_path, "ray.storage_path=s3://bucket/studies/")
    assert plan.ray_storage == "s3://bucket/studies/s"
