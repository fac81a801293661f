"""Inputs that once ended in a traceback: each is one line on stderr, exit code 2, and nothing
written. Stored values are planted in a copy of a real study as another driver of a shared
database could write them (raw SQL, past Optuna's encoder); the rest are command-line values
and a search-space file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attack_support import VICTIM, StoredCopy, one_line_error, snapshot

pytestmark = pytest.mark.integration

ANALYZE = ["hpo", "analyze", "--study-name", VICTIM]
EXPORT = ["hpo", "export-best", "--study-name", VICTIM, "--output", "best.yaml"]
TRAIN = ["hpo", "train-best", "--study-name", VICTIM]
DEEP = "[" * 100_000 + "]" * 100_000


def _trial_attr(value_json: str, key: str = "metrics") -> Callable[[StoredCopy], None]:
    return lambda s: s.sql(
        "UPDATE trial_user_attributes SET value_json = ? WHERE key = ?", value_json, key
    )


def _every_trial_attr(value_json: str) -> Callable[[StoredCopy], None]:
    return lambda s: s.sql("UPDATE trial_user_attributes SET value_json = ?", value_json)


def _system_attr(value_json: str) -> Callable[[StoredCopy], None]:
    def plant(s: StoredCopy) -> None:
        s.sql("INSERT INTO trial_system_attributes (trial_id, key, value_json) "
              "SELECT trial_id, 'planted', ? FROM trials", value_json)  # fmt: skip

    return plant


def _study_attr(value_json: str) -> Callable[[StoredCopy], None]:
    return lambda s: s.sql(
        "UPDATE study_user_attributes SET value_json = ? WHERE key = 'ugro:facts'", value_json
    )


def _distribution(distribution_json: str) -> Callable[[StoredCopy], None]:
    return lambda s: s.sql("UPDATE trial_params SET distribution_json = ?", distribution_json)


STORED: dict[str, Callable[[StoredCopy], None]] = {
    "metrics a string": _trial_attr('"abc"'),
    "metrics a number": _trial_attr("5"),
    "metrics a list": _trial_attr("[1, 2, 3]"),
    "metrics holding a string value": _trial_attr('{"y": "abc"}'),
    "metrics holding a list value": _trial_attr('{"y": [1, 2]}'),
    "metrics nested 100,000 deep": _trial_attr(DEEP),
    "a trial attribute that is not JSON": _every_trial_attr("{not json"),
    "a trial system attribute that is not JSON": _system_attr("{not json"),
    "a trial attribute nested 100,000 deep": _every_trial_attr(DEEP),
    "a study attribute that is not JSON": _study_attr("{not json"),
    "a study attribute nested 100,000 deep": _study_attr(DEEP),
    "an unknown distribution class": _distribution('{"name": "EvilDistribution", "attributes": {}}'),
    "a distribution that is not JSON": _distribution("{not json"),
    "a distribution nested 100,000 deep": _distribution(DEEP),
    "a distribution with wrong attributes": _distribution('{"name": "FloatDistribution", "attributes": {"low": "a"}}'),
    "a parameter value that is not a number": lambda s: s.sql("UPDATE trial_params SET param_value = 'abc'"),
    "an error text that is a number": _trial_attr("12345", key="error"),
}  # fmt: skip


@pytest.mark.parametrize("attack", sorted(STORED))
@pytest.mark.parametrize("command", [ANALYZE, EXPORT, TRAIN], ids=["analyze", "export", "train"])
def test_a_hostile_stored_value_is_one_line_and_writes_nothing(
    stored: StoredCopy, ugro: Any, attack: str, command: list[str]
) -> None:
    STORED[attack](stored)
    before = snapshot(stored.root)
    outcome = ugro(*command)
    if outcome.code in (0, None):
        # A value nothing in this command reads is no reason to refuse; nothing of it leaks.
        assert "Traceback" not in outcome.err
        return
    line = one_line_error(outcome)
    assert "altered" in line or "not valid" in line or "study" in line
    assert snapshot(stored.root) == before
    assert not (stored.root / "outputs" / VICTIM).exists()


ARGUMENTS: dict[str, tuple[list[str], str]] = {
    "analyze --output-dir /dev/null": ([*ANALYZE, "--output-dir", "/dev/null"], "not a directory"),
    "analyze --output-dir a file": ([*ANALYZE, "--output-dir", "a-file"], "not a directory"),
    "export-best --output a directory": ([*EXPORT[:-1], "a-dir"], "a directory"),
    "export-best --output /dev/null": ([*EXPORT[:-1], "/dev/null"], "not a regular file"),
    "export-best --output /dev/stdout": ([*EXPORT[:-1], "/dev/stdout"], "not a regular file"),
    "export-best --output a FIFO": ([*EXPORT[:-1], "a-fifo"], "not a regular file"),
    "export-best --output in /proc": ([*EXPORT[:-1], "/proc/ugro/best.yaml"], "a name in /proc/"),
    "export-best --output under a file": ([*EXPORT[:-1], "a-file/best.yaml"], "cannot write"),
    "train-best --max-steps 99999999999999999999": ([*TRAIN, "--max-steps", "9" * 20], "--max-steps"),
    "train-best --max-steps 0": ([*TRAIN, "--max-steps", "0"], "--max-steps"),
    "train-best --output-dir /dev/null": ([*TRAIN, "--output-dir", "/dev/null"], "not a directory"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ARGUMENTS))
def test_a_bad_output_or_count_is_one_line_and_writes_nothing(
    stored: StoredCopy, ugro: Any, case: str
) -> None:
    import os

    (stored.root / "a-dir").mkdir()
    (stored.root / "a-file").write_text("precious")
    os.mkfifo(stored.root / "a-fifo")
    args, message = ARGUMENTS[case]
    before = snapshot(stored.root)
    line = one_line_error(ugro(*args))
    assert message in line, line
    assert snapshot(stored.root) == before
    assert (stored.root / "a-file").read_text() == "precious"
    assert list((stored.root / "a-dir").iterdir()) == []
    assert not (stored.root / "outputs" / VICTIM).exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [("parameters: {x: {type: int, min: 0, max: " + "9" * 5000 + "}}\nobjectives: [{name: y}]\n",
      "digits"),
     ("parameters: {x: {type: float, min: 0, max: 1, default: " + "9" * 5000 + "}}\nobjectives: [{name: y}]\n",
      "digits"),
     ("parameters: {x: {type: categorical, choices: [" + "9" * 5000 + "]}}\nobjectives: [{name: y}]\n",
      "digits"),
     ("parameters: {x: {type: int, min: 0, max: 9, condition: 'y in [1e301]'}, y: {type: int, min: 0, max: 9}}\n"
      "objectives: [{name: z}]\n", "1e+300"),
     ("parameters: {x: {type: int, min: 0, max: 9}}\nconstraints: ['x in [-1e999, 1]']\nobjectives: [{name: z}]\n",
      "1e+300"),
     ("parameters: {x: {type: int, min: 0, max: 9}}\nconstraints: ['x in [" + "9" * 400 + "]']\n"
      "objectives: [{name: z}]\n", "1e+300")],
    ids=["a 5,000-digit bound", "a 5,000-digit default", "a 5,000-digit choice",
         "1e301 in a condition's list", "-1e999 in a constraint's list", "a 400-digit list item"],
)  # fmt: skip
def test_numbers_beyond_the_bounds_in_a_space_file_are_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    from ugro_hpo.errors import SearchSpaceError
    from ugro_hpo.space import load_search_space

    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    assert "\n" not in str(info.value) and message in str(info.value), str(info.value)


def test_a_stored_space_with_a_5000_digit_integer_is_one_line(
    stored: StoredCopy, ugro: Any
) -> None:
    space = json.loads(stored.study().user_attrs["ugro:search_space"])
    name = next(iter(space["parameters"]))
    space["parameters"][name]["max"] = "HUGE"
    text = json.dumps(json.dumps(space)).replace('\\"HUGE\\"', "9" * 5000)
    stored.set_raw_attr("ugro:search_space", text)
    for command in (ANALYZE, EXPORT, TRAIN):
        one_line_error(ugro(*command))
