"""Every bad value is one line on stderr, exit code 2, no traceback, and nothing written:
not-a-number numbers, negative seeds, an empty flag, a hostile search space, and an invalid
override in a multirun sweep (Hydra creates the sweep directory before any job is composed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

QUICK = ["objective=synthetic", "search_space=quadratic", "tracking=none", "max_steps=2",
         "eval_every=1", "n_trials=1"]  # fmt: skip
BAD_VALUES = {
    "seed=-5": (["seed=-5"], "seed: must be a whole number >= 0"),
    "seed beyond 32 bits": (["seed=4294967296"], "seed: must be a whole number <= 4294967295"),
    "resources.cpu=inf": (["resources.cpu=inf"], "resources.cpu: must be a number >= 0, got inf"),
    "resources.cpu=nan": (["resources.cpu=nan"], "resources.cpu: must be a number >= 0, got nan"),
    "resources.gpu=nan": (["resources.gpu=nan"], "resources.gpu: must be a number >= 0 or auto, got nan"),
    "trial_timeout_s=nan": (["trial_timeout_s=nan"], "trial_timeout_s: must be a number of seconds > 0"),
    "time_budget_s=inf": (["time_budget_s=inf"], "time_budget_s: must be a number of seconds > 0"),
    "progress_interval_s=nan": (["progress_interval_s=nan"], "progress_interval_s: must be a number of seconds > 0"),
    "a 3,000-level nested search space": (["search_space_file=DEEP"], "nested more than 32 levels deep"),
    "search=cmaes on a shared database": (
        ["search=cmaes", "storage=postgresql://u:pw@db.invalid/s"], "unpickle_shared_storage=true"),
    "a multirun with an invalid value": (["-m", "n_trials=abc,3"], "could not be converted to Integer"),
    "a multirun whose first job is refused": (["-m", "seed=-5,3"], "seed: must be a whole number >= 0"),
}  # fmt: skip


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and "[HYDRA]" not in line]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith("ugro_hpo: error: ") and "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_a_bad_value_is_one_line_exit_2_and_nothing_written(tmp_path: Path, case: str) -> None:
    args, message = BAD_VALUES[case]
    deep = tmp_path.parent / f"{tmp_path.name}-deep.yaml"
    deep.write_text("parameters: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n")
    args = [a.replace("=DEEP", f"={deep}") for a in args]
    flags = [a for a in args if a.startswith("-")]
    result = run_cli(*flags, *QUICK, *(a for a in args if a not in flags), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in _one_line(result.stderr)
    leftovers = [p for p in tmp_path.rglob("*") if not p.is_dir()]
    assert leftovers == []  # no run directory, study, multirun.yaml or tracking store
    assert not (tmp_path / "outputs" / "multirun").exists()


def test_an_empty_wandb_project_flag_is_an_error_not_a_run_without_w_and_b(tmp_path: Path) -> None:
    result = run_cli("hpo", "sweep", "--wandb-project", "", "--dry-run", module="ugro_hpo.cli",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "--wandb-project: empty" in _one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_argparse_does_not_guess_abbreviated_flags(tmp_path: Path) -> None:
    result = run_cli("hpo", "sweep", "--n-trial", "3", "--dry-run", module="ugro_hpo.cli",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "unrecognized arguments: --n-trial" in result.stderr


def test_seconds_and_resources_are_checked_without_a_process(compose, tmp_path: Path) -> None:
    """The same rules, for callers of the Python API (`ugro_hpo.run(cfg)`)."""
    from ugro_hpo.config.plan import build_plan
    from ugro_hpo.errors import ConfigError

    for override in (
        "resources.cpu=nan",
        "trial_timeout_s=inf",
        "seed=-1",
        "progress_interval_s=-3",
    ):
        with pytest.raises(ConfigError):
            build_plan(compose(*QUICK, override), tmp_path / "run")
