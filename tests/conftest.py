"""Shared fixtures: one Ray instance per session, composed configs, the CLI in a subprocess."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from attack_support import stored, ugro, victim_db  # noqa: F401  (fixtures of tests/security)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
UGRO_SPACES = FIXTURES / "ugro_search_spaces"

# Ray workers import test objectives (fixtures/fixture_objectives.py) through PYTHONPATH, and
# find a scratch folder through UGRO_TEST_MARKERS; both are set before any Ray starts.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(FIXTURES), os.environ.get("PYTHONPATH")) if p
)
os.environ.setdefault("UGRO_TEST_MARKERS", tempfile.mkdtemp(prefix="ugro-test-markers-"))
sys.path.insert(0, str(FIXTURES))


def gpu_tests_asked(markexpr: str) -> bool:
    """Did ``-m`` select gpu tests (``gpu``, ``gpu and not slow``) rather than exclude them
    (the default ``not slow and not gpu``)?"""
    tokens = re.findall(r"\w+|\(", markexpr)
    for i, token in enumerate(tokens):
        if token == "gpu":
            before = [t for t in tokens[:i] if t != "("]
            if not before or before[-1] != "not":
                return True
    return False


@functools.cache
def why_no_cuda() -> str | None:
    """Why these tests cannot have a CUDA device, or None when they can (torch is imported
    only when a gpu test is about to run)."""
    try:
        import torch
    except ImportError as exc:
        return f"torch cannot be imported ({exc})"
    if torch.cuda.is_available():
        return None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return f"torch {torch.__version__} ({build}) sees no CUDA device"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A gpu test without CUDA: skipped when it merely came along, but an error when the
    command asked for gpu tests (`-m gpu` on a machine without a GPU must not pass as green).
    It fails at set-up, not at collection, so `-m gpu --collect-only` still lists them."""
    if item.get_closest_marker("gpu") is None:
        return
    why = why_no_cuda()
    if why is None:
        return
    if gpu_tests_asked(item.config.option.markexpr or ""):
        pytest.fail(f"-m gpu asked but CUDA is not available: {why}", pytrace=False)
    pytest.skip(f"needs a CUDA device: {why}")


QUICK = [
    "objective=synthetic",
    "search_space=quadratic",
    "tracking=none",
    "max_steps=5",
    "eval_every=1",
    "n_trials=6",
]
"""Overrides for a study that takes a few seconds."""


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """Start one local Ray for the whole session; studies in this process reuse it and CLI
    subprocesses join it through its address."""
    import ray

    from ugro_hpo.process_policy import RAY_DRIVER_ENV as RAY_ENV

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


TINY_PRETRAIN_STEPS = 150


@pytest.fixture(scope="session")
def tiny_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama, built once per session (with a short pre-training) for LoRA tests."""
    from ugro_hpo.lora.models import TinyLlama

    cache = tmp_path_factory.mktemp("models")
    TinyLlama(cache_dir=str(cache), pretrain_steps=TINY_PRETRAIN_STEPS, seed=42).prepare(gpu=0)
    return cache


@pytest.fixture
def lora_overrides(tiny_model_cache: Path) -> list[str]:
    """Overrides that point the lora objective at the session's tiny model."""
    return [
        f"model.cache_dir={tiny_model_cache}",
        f"model.pretrain_steps={TINY_PRETRAIN_STEPS}",
        "tracking=none",
    ]


@pytest.fixture
def compose(tmp_path: Path) -> Callable[..., Any]:
    """Compose the app's config with overrides; outputs go under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ugro_hpo.config import conf_dir, register_resolvers
    from ugro_hpo.config.compose import register_configs

    register_configs()
    register_resolvers()

    def _compose(*overrides: str) -> Any:
        # No report unless a test asks (report=true): plotting would add seconds to every study.
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            return hydra_compose(
                "config",
                overrides=[f"outputs_dir={tmp_path / 'outputs'}", "report=false", *overrides],
            )

    return _compose


@pytest.fixture
def study(compose: Callable[..., Any], tmp_path: Path, ray_address: str) -> Callable[..., Any]:
    """Run a study in this process (on the session's Ray) and return its StudyResult."""
    from ugro_hpo import run

    runs = iter(range(1000))

    def _study(*overrides: str) -> Any:
        cfg = compose(*overrides)
        return run(cfg, run_dir=str(tmp_path / f"run{next(runs)}"))

    return _study


def run_cli(
    *args: str,
    cwd: Path,
    module: str = "ugro_hpo",
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m <module> args...` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def postgres_url() -> str:
    """A PostgreSQL server to share studies on (CI starts one with scripts/start-postgres)."""
    url = os.environ.get("UGRO_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "no PostgreSQL server: set UGRO_TEST_POSTGRES_URL (scripts/start-postgres starts one)"
        )
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(url).connect():
            pass
    except Exception as exc:
        pytest.skip(f"PostgreSQL at UGRO_TEST_POSTGRES_URL is not reachable: {type(exc).__name__}")
    return url


def stored_trials_while_running(db: Path, study_name: str) -> list[Any]:
    """The trials of a study a driver is writing to SQLite right now; [] until the driver has
    finished creating Optuna's schema. Opening the database with Optuna earlier would make this
    reader create the schema too, and one of the two creators fails on a duplicate row."""
    import sqlite3

    import optuna

    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            stamped = connection.execute("select count(*) from alembic_version").fetchone()[0]
    except sqlite3.Error:  # tables not there yet
        return []
    if not stamped:
        return []
    try:
        return optuna.load_study(study_name=study_name, storage=f"sqlite:///{db}").trials
    except KeyError:  # the study itself is not created yet
        return []
