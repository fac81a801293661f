"""Costs the machinery keeps off every trial and every study start (scripts/bench/overhead.py
measures them; these tests keep them from coming back)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_release_memory_freezes_once_and_still_collects_each_trials_cycles() -> None:
    # A fresh interpreter: the collector's frozen generation is process-wide state.
    code = """
import gc, weakref
from ugro_hpo.trainable import release_memory

class Node:
    pass

def trial():
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    return weakref.ref(a)

assert gc.get_freeze_count() == 0
first = trial()
release_memory()
frozen = gc.get_freeze_count()
assert first() is None and frozen > 0
second = trial()
release_memory()
assert second() is None, "a later trial's garbage must still be collected"
assert gc.get_freeze_count() == frozen, "only the first trial freezes what survived"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_study_start_skips_rays_callback_census() -> None:
    # Ray's telemetry would import its Comet, Aim, MLflow and W&B integrations to count our
    # callbacks by class name: about a second per study.
    usage = pytest.importorskip("ray.air._internal.usage")
    from ugro_hpo.launcher import _skip_callback_census

    _skip_callback_census()
    assert usage.tag_callbacks([object()]) is False
    assert "ray.air.integrations.comet" not in sys.modules
