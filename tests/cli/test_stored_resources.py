"""train-best reads the trials' resources back from a study database, which others may write
to: a group's settings are accepted (and left, since it trains in one process), anything else
unexpected is refused in one line."""

from __future__ import annotations

import logging

import pytest

from ugro_hpo.cli.stored_commands import _stored_resources
from ugro_hpo.errors import ConfigError


def test_a_group_s_settings_are_read_and_left(caplog: pytest.LogCaptureFixture) -> None:
    stored = {"cpu": 2, "gpu": 1, "workers": 4, "strategy": "fsdp"}
    with caplog.at_level(logging.INFO):
        assert _stored_resources(stored, "s") == {"cpu": 2.0, "gpu": 1.0}
    assert "groups of 4 workers; train-best trains in one process" in caplog.text


def test_one_worker_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert _stored_resources({"cpu": 1, "workers": 1, "strategy": "ddp"}, "s")["cpu"] == 1.0
    assert "groups of" not in caplog.text


@pytest.mark.parametrize(
    "stored",
    [
        {"workers": 0},
        {"workers": True},
        {"workers": "2; rm -rf /"},
        {"workers": 10**12},
        {"strategy": "zero3"},
        {"strategy": ["ddp"]},
        {"cpu": -1},
        {"memory": 4},
        ["cpu"],
    ],
)
def test_an_altered_record_is_refused(stored: object) -> None:
    with pytest.raises(ConfigError, match=r"study 's'.*may have been altered") as caught:
        _stored_resources(stored, "s")
    assert "\n" not in str(caught.value)
