"""A small, safe evaluator for search-space conditions and constraints.

Expressions such as ``"lora_alpha >= lora_r"`` or ``"optimizer_type in ['adam', 'adamw']"`` come
from user files, so they are never given to ``eval``. Each one is parsed once, checked against a
whitelist of syntax, and compiled into a tree of plain Python closures. Anything outside the
whitelist (calls, attributes, subscripts, comprehensions, lambdas, f-strings, unknown names,
huge powers, oversized or deeply nested input) is rejected when the file is loaded.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SOURCE_LENGTH = 1000
MAX_NODES = 200
MAX_DEPTH = 32
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e300  # no value an expression computes may be larger (floats stay finite)

Values = Mapping[str, Any]
Evaluator = Callable[[Values], Any]


class ExpressionError(ValueError):
    """An expression is malformed, not allowed, or could not be evaluated."""


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_SYMBOLS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
    ast.Mod: "%", ast.Pow: "**",
}  # fmt: skip


@dataclass(frozen=True)
class Expression:
    """A checked, compiled expression over parameter names."""

    source: str
    names: frozenset[str]
    allowed: frozenset[str] = field(repr=False, compare=False)
    _evaluate: Evaluator = field(repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:
        # Closures do not pickle; the source does, and recompiling is cheap and re-checks it.
        return compile_expression, (self.source, self.allowed)

    def evaluate(self, values: Values) -> Any:
        """Evaluate with the given parameter values; every name must be present."""
        try:
            return self._evaluate(values)
        except ExpressionError:
            raise
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ExpressionError(f"{self.source!r} could not be evaluated: {exc}") from None

    def holds(self, values: Values) -> bool:
        """Evaluate and interpret the result as a truth value."""
        return bool(self.evaluate(values))


def compile_expression(source: object, allowed_names: Collection[str]) -> Expression:
    """Parse and check ``source``; raise ExpressionError naming the problem."""
    if not isinstance(source, str):
        raise ExpressionError(f"must be a string, got {type(source).__name__}")
    text = source.strip()
    if not text:
        raise ExpressionError("is empty")
    if len(text) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"is longer than {MAX_SOURCE_LENGTH} characters")
    if any(ord(c) < 32 for c in text):
        raise ExpressionError("contains control characters")
    try:
        with warnings.catch_warnings():  # Python's own parser warnings are not the user's business
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"is not a valid expression ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise ExpressionError("is too deeply nested") from None
    except ValueError:  # Python's own bound on the digits of an integer literal
        raise ExpressionError(f"uses a number beyond ±{MAX_MAGNITUDE:g}") from None
    allowed = frozenset(allowed_names)
    checker = _Compiler(allowed)
    evaluate = checker.compile(tree.body, depth=1)
    return Expression(text, frozenset(checker.names), allowed, evaluate)


class _Compiler:
    """Walks a parsed tree once: rejects what is not allowed, builds closures for the rest."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed
        self.names: set[str] = set()
        self.nodes = 0

    def compile(self, node: ast.AST, depth: int) -> Evaluator:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExpressionError(f"has more than {MAX_NODES} elements")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"is nested more than {MAX_DEPTH} levels deep")
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise ExpressionError(f"uses {_describe(node)}, which is not allowed")
        result: Evaluator = method(node, depth + 1)
        return result

    def _Constant(self, node: ast.Constant, depth: int) -> Evaluator:
        value = node.value
        if not isinstance(value, (bool, int, float, str)):
            raise ExpressionError(f"uses the literal {value!r}, which is not allowed")
        if isinstance(value, (int, float)) and not abs(value) <= MAX_MAGNITUDE:
            raise ExpressionError(f"uses a number beyond ±{MAX_MAGNITUDE:g}")
        return lambda _values: value

    def _Name(self, node: ast.Name, depth: int) -> Evaluator:
        name = node.id
        if name not in self.allowed:
            known = ", ".join(sorted(self.allowed)) or "none"
            raise ExpressionError(f"names {name!r}, which is not a parameter (known: {known})")
        self.names.add(name)
        return lambda values: values[name]

    def _BoolOp(self, node: ast.BoolOp, depth: int) -> Evaluator:
        parts = [self.compile(v, depth) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda values: all(p(values) for p in parts)
        return lambda values: any(p(values) for p in parts)

    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> Evaluator:
        operand = self.compile(node.operand, depth)
        if isinstance(node.op, ast.Not):
            return lambda values: not operand(values)
        if isinstance(node.op, ast.USub):
            return lambda values: -_number(operand(values), "-")
        if isinstance(node.op, ast.UAdd):
            return lambda values: +_number(operand(values), "+")
        raise ExpressionError(f"uses {_describe(node)}, which is not allowed")

    def _BinOp(self, node: ast.BinOp, depth: int) -> Evaluator:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise ExpressionError(f"uses {_describe(node)}, which is not allowed")
        if isinstance(node.op, ast.Pow):
            _check_exponent(node.right)
            if any(
                isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node.left)
            ):
                raise ExpressionError("nests one '**' inside another, which is not allowed")
        left = self.compile(node.left, depth)
        right = self.compile(node.right, depth)
        symbol = _SYMBOLS[type(node.op)]

        def binary(values: Values) -> Any:
            a, b = _number(left(values), symbol), _number(right(values), symbol)
            if isinstance(node.op, ast.Pow) and a != 0 and math.log10(abs(a)) * b > _LOG_MAX:
                raise ExpressionError(f"'{symbol}' would give a number beyond ±{MAX_MAGNITUDE:g}")
            try:
                result = op(a, b)
            except OverflowError:
                raise ExpressionError(f"'{symbol}' overflowed") from None
            if isinstance(result, complex):
                raise ExpressionError(f"'{symbol}' gave a complex number")
            if not abs(result) <= MAX_MAGNITUDE:
                raise ExpressionError(f"'{symbol}' gave a number beyond ±{MAX_MAGNITUDE:g}")
            return result

        return binary

    def _Compare(self, node: ast.Compare, depth: int) -> Evaluator:
        operands = [self.compile(node.left, depth)]
        ops: list[Callable[[Any, Any], bool]] = []
        for op_node, right in zip(node.ops, node.comparators, strict=True):
            op = _COMPARE.get(type(op_node))
            if op is None:
                raise ExpressionError(f"uses {_describe(op_node)}, which is not allowed")
            if isinstance(op_node, (ast.In, ast.NotIn)):
                operands.append(self._literal_collection(right))
            else:
                operands.append(self.compile(right, depth))
            ops.append(op)

        def compare(values: Values) -> bool:
            left = operands[0](values)
            for op, right_fn in zip(ops, operands[1:], strict=True):
                right = right_fn(values)
                if not op(left, right):
                    return False
                left = right
            return True

        return compare

    def _literal_collection(self, node: ast.AST) -> Evaluator:
        """The right side of ``in``: a list or tuple of literals, nothing computed."""
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise ExpressionError("'in' needs a literal list on its right, e.g. x in ['a', 'b']")
        if len(node.elts) > MAX_NODES:
            raise ExpressionError(f"has a list longer than {MAX_NODES} items")
        items = tuple(_literal(e) for e in node.elts)
        self.nodes += len(items)
        return lambda _values: items


def _literal(node: ast.AST) -> bool | int | float | str:
    """A literal number or string (a negative number too), numbers within ±MAX_MAGNITUDE."""
    value: Any
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float, str)):
        value = node.value
    elif (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        value = -node.operand.value
    else:
        raise ExpressionError("lists after 'in' may hold only literal numbers and strings")
    if isinstance(value, (int, float)) and not abs(value) <= MAX_MAGNITUDE:
        raise ExpressionError(f"uses a number beyond ±{MAX_MAGNITUDE:g}")
    return value


def _check_exponent(node: ast.AST) -> None:
    try:
        exponent = _literal(node)
    except ExpressionError:
        raise ExpressionError("'**' needs a literal number as its exponent") from None
    if isinstance(exponent, str) or abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(f"'**' exponents are limited to numbers within ±{MAX_EXPONENT}")


_LOG_MAX = math.log10(MAX_MAGNITUDE)


def _number(value: Any, symbol: str) -> int | float:
    """Arithmetic applies to numbers only, so strings can never be multiplied into huge ones."""
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            raise ExpressionError(f"'{symbol}' got NaN")
        if not abs(value) <= MAX_MAGNITUDE:
            raise ExpressionError(f"'{symbol}' got a number beyond ±{MAX_MAGNITUDE:g}")
        return value
    raise ExpressionError(f"'{symbol}' needs numbers, got {type(value).__name__} {value!r}")


def _describe(node: ast.AST) -> str:
    kinds = {
        "Call": "a function call",
        "Attribute": "attribute access",
        "Subscript": "subscripting",
        "Lambda": "a lambda",
        "JoinedStr": "an f-string",
        "FormattedValue": "an f-string",
        "ListComp": "a comprehension",
        "SetComp": "a comprehension",
        "DictComp": "a comprehension",
        "GeneratorExp": "a comprehension",
        "NamedExpr": "an assignment (:=)",
        "IfExp": "a conditional expression",
        "Starred": "unpacking (*)",
        "Is": "'is'",
        "IsNot": "'is not'",
        "BitAnd": "'&'",
        "BitOr": "'|'",
        "BitXor": "'^'",
        "LShift": "'<<'",
        "RShift": "'>>'",
        "Invert": "'~'",
        "MatMult": "'@'",
        "Await": "'await'",
        "Yield": "'yield'",
        "YieldFrom": "'yield'",
        "Dict": "a dict literal",
        "List": "a list outside 'in'",
        "Tuple": "a tuple outside 'in'",
        "Set": "a set outside 'in'",
        "Slice": "a slice",
    }
    if isinstance(node, ast.BinOp):
        return kinds.get(type(node.op).__name__, type(node.op).__name__)
    if isinstance(node, ast.UnaryOp):
        return kinds.get(type(node.op).__name__, type(node.op).__name__)
    return kinds.get(type(node).__name__, type(node).__name__)
