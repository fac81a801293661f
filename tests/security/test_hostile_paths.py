"""Links planted under the outputs folder are never written through: a run whose run
directory, Ray directory, study database (or one of SQLite's companion files), MLflow store or
artifacts folder would pass a link is refused with one line before anything is written, a
planted report/ directory is replaced, and the file writer refuses to replace anything but a
regular file (a directory, a FIFO, a device, a link to one)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attack_support import VICTIM, StoredCopy
from conftest import run_cli

from ugro_hpo.errors import UserError
from ugro_hpo.results.writers import write_atomic
from ugro_hpo.security.paths import OutputRefused, links_below

QUICK = ["objective=synthetic", "search_space=quadratic", "max_steps=1", "eval_every=1",
         "n_trials=1", "scheduler=fifo", "study_name=s"]  # fmt: skip
PLANTED: dict[str, tuple[str, bool, list[str]]] = {
    # what the link stands for: (its path under outputs/, a directory?, overrides)
    "the study's folder": ("s", True, ["tracking=none"]),
    "Ray's folder": ("ray", True, ["tracking=none"]),
    "the study's folder in Ray's": ("ray/s", True, ["tracking=none"]),
    "the .hydra folder of a run folder made in advance": ("s/run/.hydra", True, ["tracking=none"]),
    "the study database": ("studies.db", False, ["tracking=none"]),
    "SQLite's write-ahead log": ("studies.db-wal", False, ["tracking=none"]),
    "the MLflow artifacts folder": ("mlartifacts", True, ["tracking=mlflow"]),
    "the MLflow database": ("mlflow.db", False, ["tracking=mlflow"]),
    "W&B's run files": ("wandb", True, ["tracking=wandb", "wandb.mode=offline", "wandb.project=p"]),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_run_refuses_a_link_planted_under_outputs_before_writing_anything(
    compose: Callable[..., Any], tmp_path: Path, ray_address: str, case: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    from ugro_hpo import run

    where, is_dir, overrides = PLANTED[case]
    outputs = tmp_path / "outputs"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    link = outputs / where
    link.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        link.symlink_to(elsewhere, target_is_directory=True)
    else:
        (elsewhere / "precious").write_text("precious")
        link.symlink_to(elsewhere / "precious")
    with pytest.raises(UserError) as info:
        run(compose(*QUICK, *overrides), run_dir=str(outputs / "s" / "run"), echo=False)
    assert "symbolic link" in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in elsewhere.iterdir()) == ([] if is_dir else ["precious"])
    assert (elsewhere / "precious").read_text() == "precious" if not is_dir else True
    written = [p for p in outputs.rglob("*") if p.is_file() and not p.is_symlink()]
    assert written == []


@pytest.mark.integration
def test_a_planted_log_file_link_is_replaced_not_appended_through(
    compose: Callable[..., Any], tmp_path: Path, ray_address: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    from ugro_hpo import run

    elsewhere = tmp_path_factory.mktemp("log-target")
    (elsewhere / "precious").write_text("precious")
    run_dir = tmp_path / "outputs" / "s" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "ugro_hpo.log").symlink_to(elsewhere / "precious")
    result = run(compose(*QUICK, "tracking=none"), run_dir=str(run_dir), echo=False)
    assert result.status == "complete"
    assert (elsewhere / "precious").read_text() == "precious"
    log = run_dir / "ugro_hpo.log"
    assert log.is_file() and not log.is_symlink()


@pytest.mark.integration
def test_the_app_refuses_a_planted_study_folder_and_leaves_the_target_as_it_was(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Hydra makes the run directory before the app starts, through the link: the refusal
    removes what Hydra made there, and nothing else."""
    elsewhere = tmp_path_factory.mktemp("target")
    (elsewhere / "kept").mkdir()  # an empty folder of the victim's: not removed either
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "s").symlink_to(elsewhere, target_is_directory=True)
    result = run_cli(*QUICK, "tracking=none", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "symbolic link" in lines[0], result.stderr[-2000:]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["kept"]
    assert not (tmp_path / "outputs" / "studies.db").exists()


@pytest.mark.integration
def test_a_planted_report_folder_is_replaced_not_written_through(
    stored: StoredCopy, ugro: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("report-target")
    out = stored.root / "out"
    out.mkdir()
    (out / "report").symlink_to(elsewhere, target_is_directory=True)
    outcome = ugro("hpo", "analyze", "--study-name", VICTIM, "--output-dir", str(out))
    assert outcome.code in (0, None), outcome.err[-2000:]
    assert list(elsewhere.iterdir()) == []
    assert (out / "report").is_dir() and not (out / "report").is_symlink()
    assert (out / "report" / "index.html").is_file()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


SPECIAL: dict[str, Callable[[Path], Any]] = {
    "a directory": lambda p: p.mkdir(),
    "a FIFO": _fifo,
    "a link to a directory": lambda p: p.symlink_to(p.parent, target_is_directory=True),
    "a link to a device": lambda p: p.symlink_to("/dev/zero"),
    "a link to a FIFO": lambda p: (_fifo(p.with_name("fifo")), p.symlink_to(p.with_name("fifo"))),
}


@pytest.mark.parametrize("case", sorted(SPECIAL))
def test_the_file_writer_never_replaces_a_special_file(tmp_path: Path, case: str) -> None:
    target = tmp_path / "summary.json"
    SPECIAL[case](target)
    before = sorted((p.name, p.is_symlink()) for p in tmp_path.iterdir())
    with pytest.raises(OutputRefused, match="not a regular file"):
        write_atomic(target, "{}")
    assert sorted((p.name, p.is_symlink()) for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/null", "/proc/self/fd/1", "/sys/x"])
def test_the_file_writer_never_writes_in_system_folders(name: str) -> None:
    with pytest.raises(OutputRefused, match="not a regular file"):
        write_atomic(Path(name), "{}")


def test_links_are_found_anywhere_below_the_root_also_when_the_root_is_a_link(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real"
    (real / "s" / "a").mkdir(parents=True)
    (tmp_path / "outputs").symlink_to(real, target_is_directory=True)  # the user's own choice
    assert links_below(tmp_path / "outputs", tmp_path / "outputs" / "s" / "a" / "new") is None
    assert links_below(real, tmp_path / "outputs" / "s" / "a") is None
    (real / "s" / "b").symlink_to(tmp_path, target_is_directory=True)
    assert (
        links_below(real, tmp_path / "outputs" / "s" / "b" / "x")
        == tmp_path / "outputs" / "s" / "b"
    )
    assert (
        links_below(real, tmp_path / "elsewhere" / "x") is None
    )  # not under it: not ours to judge
