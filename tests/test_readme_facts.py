"""Facts in the README that a script produces: the demo's typical result is the rendering of a
recorded run of `scripts/demo` (scripts/bench/demo_result.py), never typed by hand."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts" / "bench"))
import demo_result  # a script's module, beside its benchlib


def test_the_readme_demo_result_is_the_rendering_of_a_recorded_demo_run() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    data = demo_result.readme_data(readme)
    assert data is not None, "run scripts/bench/demo_result.py to write the README's demo result"
    inside = readme.split(demo_result.START, 1)[1].split(demo_result.END, 1)[0]
    assert inside.strip() == demo_result.block(data).strip()
    second = data["second"]
    states = [t["state"] for t in second["trials"]]
    assert {s: states.count(s) for s in set(states)} == {
        s: n for s, n in second["counts"].items() if n
    }
    assert data["machine"]["date"] in inside
