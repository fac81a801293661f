"""Plain-text tables, as the terminal and logs show them: left-aligned columns two spaces apart.

The end-of-study summary and the multirun comparison both print one; each formats its own cells.
"""

from __future__ import annotations

from collections.abc import Sequence


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The header line, then one line per row, every column as wide as its widest cell."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
