"""Search-space files from someone else: small files that would cost a great deal (alias bombs,
deep nesting, huge numbers) are refused when they are loaded, in well under a second and a
few MB, and `dry_run=true` refuses them too."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from conftest import run_cli

from ugro_hpo.errors import SearchSpaceError
from ugro_hpo.space import load_search_space, parse_search_space

HEAD = "parameters: {x: {type: float, min: 0, max: 1}, y: {type: int, min: 1, max: 100}}\nobjectives: [{name: loss}]\n"
LAUGHS = "metadata:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  {b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
HOSTILE = {
    "alias bomb in metadata": HEAD + LAUGHS,
    "alias bomb as choices": LAUGHS.replace("metadata:", "anchors:") + "parameters:\n  x: {type: categorical, choices: *i}\n",
    "an alias that refers to itself": HEAD + "metadata: &m {again: *m}\n",
    "3,000 nested lists": HEAD + "metadata: {deep: " + "[" * 3000 + "]" * 3000 + "}\n",
    "3,000 nested mappings": "parameters: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "nested powers in a condition": HEAD.replace("max: 100}", "max: 100, condition: '(x ** 64) ** 64 > 1'}"),
    "nested powers in a constraint": HEAD + "constraints: ['((y ** 64) ** 64) ** 64 > 1']\n",
    "a power of a power's result": HEAD + "constraints: ['2 ** (y ** 2) > 1']\n",
    "a literal beyond 1e300": HEAD + "constraints: ['y < 1e999']\n",
    "a bound beyond 1e300": "parameters: {x: {type: int, min: 0, max: " + "9" * 400 + "}}\nobjectives: [{name: loss}]\n",
    "a file of 300 KB": HEAD + "metadata: {padding: '" + "x" * 300_000 + "'}\n",
}  # fmt: skip


def _refused_quickly(path: Path) -> str:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SearchSpaceError) as info:
            load_search_space(path)
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MB"
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"search space {path}")
    return message


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_hostile_search_space_file_is_refused_at_load_time(tmp_path: Path, attack: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(HOSTILE[attack])
    if "alias bomb as choices" in attack:
        # A top-level key outside the schema would be refused anyway; the bomb must be refused
        # before that is even looked at.
        assert "once aliases are expanded" in _refused_quickly(path)
    else:
        _refused_quickly(path)


def test_an_alias_bomb_is_refused_before_anything_expands_it(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(HEAD + LAUGHS)
    assert len(path.read_bytes()) < 700
    assert "once aliases are expanded" in _refused_quickly(path)


def test_aliases_a_person_would_write_still_work(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "common: &rate {type: float, min: 1.0e-5, max: 1.0e-2, log: true}\n".replace("common", "metadata")
        + "parameters: {lr: *rate, lr_head: *rate}\nobjectives: [{name: loss}]\n"
    )  # fmt: skip
    space = load_search_space(path)
    assert space.names == ["lr", "lr_head"]


def test_nested_data_from_a_config_group_is_bounded_too() -> None:
    shared = ["x"] * 50
    data = {"parameters": {"x": {"type": "float", "min": 0, "max": 1}}, "objectives": [{"name": "l"}],
            "metadata": {"m": [[shared] * 50] * 50}}  # fmt: skip
    with pytest.raises(SearchSpaceError, match="once expanded"):
        parse_search_space(data, "search_space=evil")


def test_a_hostile_file_fails_a_dry_run_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(HEAD + LAUGHS)
    started = time.perf_counter()
    result = run_cli(f"search_space_file={path}", "dry_run=true", "objective=custom",
                     "objective.fn=fixture_objectives:any_params", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "once aliases are expanded" in result.stderr
    assert time.perf_counter() - started < 30  # a whole process; the refusal itself is milliseconds
    assert not (tmp_path / "outputs").exists()
