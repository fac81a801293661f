"""Security: name rules, API keys, redaction everywhere, and expressions that never run code."""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import secrets
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ugro_hpo.errors import ConfigError, SearchSpaceError
from ugro_hpo.names import (
    check_mlflow_experiment,
    check_path_name,
    check_tags,
    check_wandb_entity,
    check_wandb_project,
)
from ugro_hpo.security.keys import check_key_format, read_key_file
from ugro_hpo.security.redaction import is_secret_name, mask, redact_data, redact_text, register
from ugro_hpo.space import ExpressionError, compile_expression, load_search_space

# -- names ------------------------------------------------------------------------------------

BAD_EVERYWHERE = [
    "", "bang!", "../up", "..", "new\nline", "tab\tname", "semi;colon", "pipe|x", "amp&x", "$(whoami)",
    "`id`", "back\\slash", "quote'x", 'dq"x', "star*", "lt<gt>", "\uff4c\uff4f\uff4f\uff4b", "cyrillic-\u0430", "nul\x00l",
    "emoji-🙂", "percent%", "brace{x}", "hash#x", "question?", "comma,x",
]  # fmt: skip
GOOD_EVERYWHERE = ["my-lora-experiments", "project_2024", "llama-fine-tuning"]
KINDS = {
    "study_name": (
        lambda v: check_path_name(v, "study_name"),
        ["has space", "a/b", ".hidden", "x" * 129],
    ),
    "wandb.project": (check_wandb_project, ["has space", "a/b", "dot.name", "x" * 129]),
    "wandb.entity": (check_wandb_entity, ["has space", "a/b", "dot.name", "x" * 129]),
    "mlflow.experiment_name": (check_mlflow_experiment, [" leading-space", "x" * 251, "a/../b"]),
    "tag name": (lambda v: check_tags({v: "x"}), ["has space", "a/b", "x" * 65]),
}
NAME_CASES = [(kind, bad) for kind, (_, extra) in KINDS.items() for bad in BAD_EVERYWHERE + extra]


@pytest.mark.parametrize(
    ("kind", "name"), NAME_CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(NAME_CASES)]
)
def test_bad_names_are_refused(kind: str, name: str) -> None:
    with pytest.raises(ConfigError):
        KINDS[kind][0](name)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", GOOD_EVERYWHERE)
def test_the_guides_examples_are_accepted(kind: str, name: str) -> None:
    KINDS[kind][0](name)


def test_an_invalid_wandb_project_stops_ugro_sweep_before_anything(tmp_path: Path) -> None:
    result = run_cli(
        "hpo",
        "sweep",
        "--wandb-project",
        "invalid project name!",
        cwd=tmp_path,
        module="ugro_hpo.cli",
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Invalid project name: invalid project name!" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_wandb_project_stops_the_app_too(tmp_path: Path) -> None:
    result = run_cli("tracking=wandb", "wandb.project='bad/name'", cwd=tmp_path)
    assert result.returncode == 2 and "Invalid project name: bad/name" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- API keys ---------------------------------------------------------------------------------

ALPHABET = string.ascii_letters + string.digits + "-_"


@pytest.mark.parametrize("length", range(65))
def test_masking_never_shows_more_than_the_last_four_characters(length: int) -> None:
    key = "".join(secrets.choice(ALPHABET) for _ in range(length))
    shown = mask(key)
    revealed = shown.replace("***", "")
    assert len(revealed) <= 4
    assert revealed == "" or (length >= 20 and key.endswith(revealed))
    assert not any(key[i : i + 5] in shown for i in range(length - 4))
    if length < 20:  # too short to be a key: refused, and the message shows none of it
        with pytest.raises(ConfigError) as info:
            check_key_format(key, "WANDB_API_KEY")
        assert "(***)" in str(info.value)


def test_key_format_accepts_plain_and_newer_keys() -> None:
    check_key_format("a" * 40, "WANDB_API_KEY")
    check_key_format("local-" + "b1" * 20 + "_x", "WANDB_API_KEY")
    with pytest.raises(ConfigError, match="looks malformed"):
        check_key_format("k" * 30 + " !", "WANDB_API_KEY")


def test_a_key_file_others_can_read_gets_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "wandb.key"
    key_file.write_text("k" * 40 + "\n")
    key_file.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="ugro_hpo.security.keys"):
        assert read_key_file(key_file, "wandb.api_key_file") == "k" * 40
        assert not caplog.records
        key_file.chmod(0o644)
        read_key_file(key_file, "wandb.api_key_file")
    assert "readable by other users" in caplog.text and "chmod 600" in caplog.text


def test_a_malformed_key_stops_w_and_b_tracking_with_a_masked_message(tmp_path: Path) -> None:
    key = "short" + secrets.token_hex(3)
    result = run_cli(
        "tracking=wandb",
        "wandb.project=p",
        "dry_run=true",
        cwd=tmp_path,
        env={"WANDB_API_KEY": key},
    )
    assert result.returncode == 2
    assert "WANDB_API_KEY looks malformed (***)" in result.stderr and key not in result.stderr


def test_keys_come_from_a_dotenv_file_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WANDB_PROJECT=from-dotenv\nWANDB_ENTITY=from-dotenv\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["WANDB_ENTITY"] = "from-environment"
    probe = "from ugro_hpo.cli.app import load_secrets; load_secrets(); import os; print(os.environ['WANDB_PROJECT'], os.environ['WANDB_ENTITY'])"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.stdout.split() == ["from-dotenv", "from-environment"]
    run = subprocess.run([sys.executable, "-m", "ugro_hpo", "tracking=wandb", "dry_run=true"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr  # wandb.project came from .env


def test_api_keys_cannot_come_from_the_config(tmp_path: Path) -> None:
    key = "k" * 36 + secrets.token_hex(4)
    result = run_cli(
        "tracking=wandb", "wandb.project=p", f"+wandb.api_key={key}", "dry_run=true", cwd=tmp_path
    )
    assert result.returncode == 2
    assert key not in result.stderr and "api_key" in result.stderr


# -- redaction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["api_key", "WANDB_API_KEY", "hf_token", "token", "github_token", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_PASSWORD", "db_passwd",
             "client_secret", "privateKey", "aws_access_key_id", "credentials", "session_key", "Authorization"],
)  # fmt: skip
def test_secret_names_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["lora_r", "eval_loss", "max_tokens", "train_tokens_per_s", "tokenizer", "authors", "keyword",
     "eval_token_accuracy", "eval_token_f1", "token_count"],  # measures of tokens, not tokens
)  # fmt: skip
def test_ordinary_names_are_left_alone(name: str) -> None:
    assert not is_secret_name(name)


def test_a_redacted_number_in_a_mapping_keeps_the_mapping_readable() -> None:
    import json

    text = json.dumps({"api_token": 123456789, "eval_token_accuracy": 0.5, "x": 1}, indent=2)
    redacted = redact_text(text)
    assert "123456789" not in redacted and '"eval_token_accuracy": 0.5,' in redacted
    assert redact_text('{"api_token": 123456789, "x": 1}') == '{"api_token": ***, "x": 1}'


def test_redaction_of_data_urls_and_text() -> None:
    secret = "pw-" + secrets.token_hex(8)
    data = {
        "db": {"password": secret, "lr": 0.1},
        "uri": f"postgresql://me:{secret}@db/x",
        "notes": ["ok"],
    }
    assert redact_data(data) == {
        "db": {"password": "***", "lr": 0.1},
        "uri": "postgresql://me:***@db/x",
        "notes": ["ok"],
    }
    register(secret)  # redact_data also remembers it, so free text elsewhere is scrubbed
    assert redact_text(f"failed with {secret} in it; api_key=abc123xyz; max_tokens=512") == (
        "failed with *** in it; api_key=***; max_tokens=512"
    )


def test_cfg_job_output_is_redacted(tmp_path: Path) -> None:
    secret = "tag-" + secrets.token_hex(8)
    result = run_cli("--cfg", "job", f"+tags.api_token={secret}", cwd=tmp_path)
    assert result.returncode == 0 and "api_token: ***" in result.stdout
    assert secret not in result.stdout + result.stderr


def _tree_contains(root: Path, values: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {v[:4]}..." for v in values if v.encode() in data]
    return hits


@pytest.mark.slow
@pytest.mark.integration
def test_planted_secrets_appear_nowhere(tmp_path: Path) -> None:
    """Secrets in the environment, a .env file, a credentialed URI and a secret-named override;
    a dual-tracking study runs; none of the values is in the console output or any file."""
    from servers import MlflowServer

    planted = {
        "WANDB_API_KEY": "wk" + secrets.token_hex(20),
        "MLFLOW_TRACKING_PASSWORD": "mp-" + secrets.token_hex(8),
        "HF_TOKEN": "hf_" + secrets.token_hex(12),
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }
    dotenv_secret = "dotenv-" + secrets.token_hex(8)
    uri_secret = "uri-" + secrets.token_hex(8)
    override_secret = "tag-" + secrets.token_hex(8)
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f"SERVICE_API_TOKEN={dotenv_secret}\n")
    server = MlflowServer(tmp_path / "mlflow")
    try:
        env = {**os.environ, **planted}
        env.pop("RAY_ADDRESS", None)
        uri = server.uri.replace("http://", f"http://ugro:{uri_secret}@")
        result = subprocess.run(
            [sys.executable, "-m", "ugro_hpo", "objective=synthetic", "search_space=quadratic", "tracking=dual",
             "wandb.project=secure", "wandb.mode=offline", f"mlflow.tracking_uri={uri}", f"+tags.api_token={override_secret}",
             "n_trials=3", "max_steps=3", "eval_every=1", "scheduler=fifo", "verbose=1"],
            cwd=work, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    values = [*planted.values(), dotenv_secret, uri_secret, override_secret]
    console = result.stdout + result.stderr
    assert [v[:4] for v in values if v in console] == []
    assert _tree_contains(work / "outputs", values) == []  # runs, studies.db, mlflow, wandb/, ray/
    assert (
        _tree_contains(tmp_path / "mlflow", values) == []
    )  # the MLflow server's store and artifacts
    assert "MLflow: run" in result.stdout and "W&B: 3 run(s)" in result.stdout


# -- expressions and search-space files -------------------------------------------------------

NAMES = ["x", "y", "opt"]
_ALLOWED_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
                  ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.Compare, ast.Eq, ast.NotEq,
                  ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Name, ast.Load, ast.Constant, ast.List,
                  ast.Tuple, ast.Set)  # fmt: skip
TOKENS = ["x", "y", "opt", "z", "1", "2.5", "-3", "'adam'", "True", "(", ")", "[", "]", ",", "+", "-", "*", "/", "//",
          "%", "**", "==", "!=", "<", ">=", " and ", " or ", "not ", " in ", " is ", ".", "__class__", "open(", "lambda:",
          "f'{x}'", "[i for i in x]", "import", ":=", "if", "else", "9**9**9", "'a'*99999999"]  # fmt: skip


def _check(source: str) -> None:
    started = time.perf_counter()
    try:
        expression = compile_expression(source, NAMES)
    except ExpressionError:
        return
    # What compiled holds only whitelisted syntax over declared names ...
    for node in ast.walk(ast.parse(expression.source, mode="eval")):
        assert isinstance(node, _ALLOWED_NODES), type(node).__name__
        assert not isinstance(node, ast.Name) or node.id in NAMES
    # ... and evaluates to a value or our error, quickly.
    for values in ({"x": 0, "y": 2, "opt": "adam"}, {"x": 10**6, "y": -1.5, "opt": ""}):
        with contextlib.suppress(ExpressionError):
            expression.evaluate(values)
    assert time.perf_counter() - started < 1.0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text_never_runs_and_only_raises_our_error(source: str) -> None:
    _check(source)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
def test_expression_shaped_input_never_runs_and_only_raises_our_error(source: str) -> None:
    _check(source)


def test_search_space_files_cannot_import_or_instantiate(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    space = tmp_path / "evil.yaml"
    space.write_text(
        f"parameters: !!python/object/apply:os.system ['touch {marker}']\nobjectives: [{{name: l}}]\n"
    )
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(space)
    assert "invalid YAML" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()
    target = tmp_path / "target.yaml"
    target.write_text(
        "parameters: {x: {type: float, min: 0, max: 1, condition: \"__import__('os').system('touch "
        + str(marker)
        + "')\"}}\n"
        "objectives: [{name: l}]\n"
    )
    with pytest.raises(SearchSpaceError, match="function call"):
        load_search_space(target)
    assert not marker.exists()


def test_the_dry_run_plan_shows_a_storage_url_without_its_password(compose, tmp_path: Path) -> None:
    from ugro_hpo.config.plan import build_plan, describe

    password = "pw" + secrets.token_hex(8)
    cfg = compose(f"storage=postgresql://ugro:{password}@db.example:5432/studies")
    text = describe(build_plan(cfg, tmp_path / "run"))
    assert "postgresql://ugro:***@db.example:5432/studies" in text and password not in text


@pytest.mark.slow
def test_the_shell_s_working_directory_is_not_taken_for_a_password(tmp_path: Path) -> None:
    """PWD ends in a secret-looking segment (pwd), but it is the working directory: the
    end-of-study table must still show where the run directory is."""
    result = run_cli("objective=synthetic", "search_space=branin", "max_steps=1", "eval_every=1",
                     "n_trials=1", "tracking=none", "report=false", cwd=tmp_path,
                     env={"PWD": str(tmp_path), "DB_PASSWORD": "hunter2-but-longer"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Run directory: {tmp_path}/outputs/" in result.stdout
