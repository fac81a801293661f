"""Question / answer pairs about Python's standard library, built from its own source.

Each public function and class at the top of a standard-library module whose docstring opens
with a sentence of reasonable length becomes one pair: "What does the function
``json.dumps`` do?" answered by that first sentence. The source files are parsed (never
imported), in sorted order, so the same Python gives the same pairs everywhere, offline.
"""

from __future__ import annotations

import ast
import functools
import re
import sysconfig
from pathlib import Path

SKIPPED_MODULES = frozenset({"this", "antigravity"})
FIRST_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)")
MIN_ANSWER, MAX_ANSWER = 20, 160  # characters: long enough to say something, short to generate
PROMPT = "### Question:\n{question}\n### Answer:\n"


@functools.cache
def pairs() -> tuple[tuple[str, str], ...]:
    """(question, answer) for every documented public function and class, in a fixed order."""
    out = []
    for source in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        module = source.stem
        if module.startswith("_") or module in SKIPPED_MODULES:
            continue
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            answer = first_sentence(ast.get_docstring(node) or "")
            if answer is None or answer.startswith(f"{node.name}("):  # a signature, not prose
                continue
            kind = "function" if isinstance(node, ast.FunctionDef) else "class"
            verb = "do" if kind == "function" else "represent"
            out.append((f"What does the {kind} `{module}.{node.name}` {verb}?", answer))
    return tuple(out)


def first_sentence(docstring: str) -> str | None:
    """The docstring's first sentence on one line, or None when it is too short or too long."""
    paragraph = " ".join(docstring.split("\n\n", 1)[0].split())
    match = FIRST_SENTENCE.match(paragraph)
    sentence = match.group(1) if match else paragraph
    return sentence if MIN_ANSWER <= len(sentence) <= MAX_ANSWER else None
