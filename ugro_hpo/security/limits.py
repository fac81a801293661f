"""Bounds on data we did not write: search-space files, presets' search spaces, and what a
shared study database hands back.

A hostile file can be small and still cost a great deal: a 700-byte YAML file whose aliases
refer to aliases expands to billions of nodes when anything walks it, 3,000 nested brackets
exhaust the parser's recursion, and a stored JSON attribute can be as large as the database
allows. Everything here refuses such input in milliseconds, before it is parsed into Python
objects that something else could expand, with an error that names the source.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from ugro_hpo.errors import UserError

MAX_FILE_BYTES = 256 * 1024  # a search space of a few hundred parameters is a few KB
MAX_DEPTH = 32  # mappings and lists nested in one another
MAX_NODES = 20_000  # values after every alias is expanded


class TooLarge(UserError):
    """Input beyond the bounds above (the message says which and where)."""


def check_text_size(text: str | bytes, label: str, limit: int = MAX_FILE_BYTES) -> None:
    """Refuse text longer than ``limit`` bytes before anything parses it."""
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > limit:
        raise TooLarge(f"{label}: {size} bytes, more than the {limit} allowed")


def load_yaml(text: str, label: str) -> Any:
    """``yaml.safe_load`` with bounds on size, nesting depth and alias expansion."""
    check_text_size(text, label)
    _check_flow_depth(text, label)
    loader = _BoundedLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except TooLarge as exc:
            raise TooLarge(f"{label}: {exc}") from None
        if node is None:
            return None
        _check_node_graph(node, label)
        try:
            return loader.construct_document(node)
        except ValueError as exc:  # Python's bound on the digits of an integer it reads
            if "digits" not in str(exc):
                raise
            raise TooLarge(
                f"{label}: holds a number of more than {sys.get_int_max_str_digits()} digits"
            ) from None
    finally:
        loader.dispose()


def _check_flow_depth(text: str, label: str) -> None:
    """Brackets nested beyond MAX_DEPTH, refused before the YAML scanner sees them: its cost
    grows with the square of the nesting. Brackets inside quoted text count too, which only
    matters for text with more than MAX_DEPTH unclosed brackets."""
    depth = 0
    for match in _BRACKETS.finditer(text):
        depth += 1 if match[0] in "[{" else -1
        if depth > MAX_DEPTH:
            raise TooLarge(f"{label}: nested more than {MAX_DEPTH} levels deep")


_BRACKETS = re.compile(r"[\[\]{}]")


def load_json(text: Any, label: str, limit: int = MAX_FILE_BYTES) -> Any:
    """``json.loads`` of stored text, bounded like a file; a malformed value is a TooLarge-like
    one-line error rather than a traceback."""
    if not isinstance(text, str):
        raise UserError(f"{label}: expected JSON text, found {type(text).__name__}")
    check_text_size(text, label, limit)
    try:
        data = json.loads(text)
    except RecursionError:
        raise TooLarge(f"{label}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise UserError(f"{label}: not valid JSON ({exc})") from None
    check_data(data, label)
    return data


def check_data(data: Any, label: str) -> None:
    """Refuse parsed data nested deeper than MAX_DEPTH, larger than MAX_NODES values once
    shared parts are counted every time they occur, or referring to itself."""

    def children(value: Any) -> list[Any] | None:
        if isinstance(value, Mapping):
            return [*value.keys(), *value.values()]
        if isinstance(value, (list, tuple, set, frozenset)):
            return list(value)
        return None

    _check_graph(data, children, label, "once expanded")


def _check_node_graph(root: Any, label: str) -> None:
    """The same bounds over a composed YAML node graph, where an alias is a shared node."""

    def children(node: Any) -> list[Any] | None:
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        return None

    _check_graph(root, children, label, "once aliases are expanded")


def _check_graph(root: Any, children_of: Callable[[Any], list[Any] | None], label: str,
                 expanded: str) -> None:  # fmt: skip
    """Depth, expanded size and cycles of a graph whose shared parts are counted each time
    they occur (memoised by identity, so the walk itself stays as small as the graph)."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def walk(node: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise TooLarge(f"{label}: nested more than {MAX_DEPTH} levels deep")
        children = children_of(node)
        if children is None:
            return 1
        key = id(node)
        if key in visiting:
            raise TooLarge(f"{label}: refers to itself")
        if key in sizes:
            return sizes[key]
        visiting.add(key)
        total = 1
        for child in children:
            total += walk(child, depth + 1)
            if total > MAX_NODES:
                raise TooLarge(f"{label}: more than {MAX_NODES} values {expanded}")
        visiting.discard(key)
        sizes[key] = total
        return total

    walk(root, 1)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses deep nesting long before Python's recursion limit."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TooLarge(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
