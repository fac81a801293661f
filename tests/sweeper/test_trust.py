"""The sweeper passes the command line's trust boundary: secrets registered at start (the
environment, `.env`, URL passwords), credentials refused wherever a sweep could carry them,
a search-space file naming app parameters only, and every file, database row, Ray log and
console line of a sweep free of the secrets it knows."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sweeps import error_lines, run_sweep, trial_rows

pytestmark = pytest.mark.integration
PASSWORD = "Pw-" + secrets.token_hex(8)  # a storage URL's password, for refusals to keep


def space_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text + "objectives: [{name: loss, direction: minimize}]\n")
    return f"hydra.sweeper.search_space_file={path}"


REFUSED = [
    ("logger._target_", "parameters: {logger._target_: {type: categorical, choices: [os.makedirs]}}\n"),
    ("model._partial_", "parameters: {model._partial_: {type: categorical, choices: [true]}}\n"),
    ("model._args_", "parameters: {model._args_: {type: categorical, choices: [[1]]}}\n"),
    ("hydra.sweep.subdir", "parameters: {hydra.sweep.subdir: {type: categorical, choices: [x]}}\n"),
    ("hydra/launcher", "parameters: {hydra/launcher: {type: categorical, choices: [basic]}}\n"),
    ("${...}", "parameters: {quality: {type: categorical, choices: ['${oc.env:HOME}']}}\n"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text"), REFUSED, ids=[name for name, _ in REFUSED])
def test_a_search_space_file_may_name_app_parameters_only(
    tmp_path: Path, name: str, text: str
) -> None:
    """The file may come from someone else: its names would pick what the app instantiates
    or where jobs write. Refused in one line, before anything runs or is written."""
    result = run_sweep("curves", tmp_path, None, space_file(tmp_path, text), "hydra.sweeper.params=null",
                       f"hydra.sweeper.storage=postgresql://u:{PASSWORD}@127.0.0.1:1/db", timeout=120)  # fmt: skip
    _refused(result, tmp_path, "search space", name.split("{")[0])


CREDENTIALS = [
    ["hydra.sweeper.overrides=['+hydra.job.env_set.WANDB_API_KEY=" + PASSWORD + "']"],
    ["hydra.sweeper.overrides=['wandb.api_key=" + PASSWORD + "']"],
    ["+hydra.job.env_set.WANDB_API_KEY=" + PASSWORD],
    ["++hydra.job.env_set.mlflow_tracking_password=" + PASSWORD],
]


@pytest.mark.parametrize("overrides", CREDENTIALS)
def test_credentials_are_refused_wherever_a_sweep_could_carry_them(
    tmp_path: Path, overrides: Sequence[str]
) -> None:
    result = run_sweep("curves", tmp_path, None, *overrides, timeout=120)
    _refused(result, tmp_path, "is refused, as credentials are never read from a config", "")


def _refused(result: object, tmp_path: Path, fragment: str, name: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]  # type: ignore[attr-defined]
    lines = error_lines(result.stderr)  # type: ignore[attr-defined]
    assert len(lines) == 1 and fragment in lines[0] and name in lines[0], lines
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    assert PASSWORD not in result.stdout + result.stderr  # type: ignore[attr-defined]
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "steps.log").exists()


@pytest.fixture
def ray_temp() -> Iterator[Path]:
    """A temp dir of its own for the sweep's Ray (short: Ray's socket paths have a limit)."""
    path = Path(tempfile.mkdtemp(prefix="ur-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _storages(tmp_path: Path, postgres: str | None) -> str:
    if postgres is None:
        return f"sqlite:///{tmp_path / 'studies.db'}"
    # The URL's password is the secret; the server is given its own in the query (the query
    # wins), so the URL's is a value of its own to look for.
    user, rest = postgres.split("://", 1)[1].split("@", 1)
    name, real = user.split(":", 1)
    return f"postgresql://{name}:{PASSWORD}@{rest}?password={real}"


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_a_sweep_leaves_no_secret_in_any_file_database_ray_log_or_console(
    tmp_path: Path, ray_temp: Path, storage: str, request: pytest.FixtureRequest
) -> None:
    postgres = request.getfixturevalue("postgres_url") if storage == "postgresql" else None
    token = "tok-" + secrets.token_hex(10)
    url = _storages(tmp_path, postgres)
    result = run_sweep(
        "leaky", tmp_path, None, f"hydra.sweeper.storage='{url}'", "hydra.sweeper.ray.num_cpus=1",
        f"hydra.sweeper.study_name=leaky-{secrets.token_hex(4)}",
        env={"UGRO_LEAKY_DB_TOKEN": token, "RAY_TMPDIR": str(ray_temp)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trial_rows(tmp_path / "sweep")
    failed = [r for r in rows if r["state"] == "failed"]
    assert failed and all("cannot reach the database with token=***" in r["error"] for r in failed)
    assert "connecting with ***" in result.stdout  # the app's print reached the console, scrubbed
    sessions = list((ray_temp / "ray").glob("session_*/logs/*"))
    assert sessions, "the sweep's Ray wrote no session logs where it was told to"
    secrets_known = {"the environment variable's value": token}
    if postgres is not None:
        secrets_known["the storage URL's password"] = PASSWORD
    for what, value in secrets_known.items():
        where = [str(p) for p in _files(tmp_path, ray_temp) if value.encode() in p.read_bytes()]
        assert where == [], f"{what} is in {where}"
        assert value not in result.stdout + result.stderr, f"{what} is on the console"
        if postgres is not None:
            assert _rows_holding(postgres, value) == [], f"{what} is in the study database"
    assert (tmp_path / "sweep" / "multirun.yaml").is_file()  # the files were there to search
    assert list((tmp_path / "sweep").glob("*/.hydra/hydra.yaml"))


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                yield path


def _rows_holding(url: str, value: str) -> list[str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    found = []
    with engine.connect() as connection:
        for table in sqlalchemy.inspect(connection).get_table_names():
            rows = connection.execute(sqlalchemy.text(f'SELECT CAST(t AS text) FROM "{table}" t'))
            found += [f"{table}: {row[0][:80]}" for row in rows if value in row[0]]
    engine.dispose()
    return found
