"""The one plain-text table renderer (summary table, multirun comparison)."""

from __future__ import annotations

from ugro_hpo.results.text_table import text_table


def test_columns_are_as_wide_as_their_widest_cell_and_two_spaces_apart() -> None:
    assert text_table(["trial", "loss"], [["7", "0.125"], ["12", "3"]]) == [
        "trial  loss ",
        "7      0.125",
        "12     3    ",
    ]
    assert text_table(["a", "b"], []) == ["a  b"]
