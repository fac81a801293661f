"""The safe expression evaluator: what it accepts, what it refuses, how it evaluates."""

from __future__ import annotations

import pickle

import pytest

from ugro_hpo.space import ExpressionError, compile_expression

NAMES = ["a", "b", "opt", "lora_r", "lora_alpha", "lora_dropout"]


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("lora_alpha >= lora_r", {"lora_alpha": 32.0, "lora_r": 16}, True),
        ("lora_alpha >= lora_r", {"lora_alpha": 8.0, "lora_r": 16}, False),
        ("lora_dropout >= 0.0 and lora_dropout <= 0.5", {"lora_dropout": 0.3}, True),
        ("0.0 <= lora_dropout <= 0.5", {"lora_dropout": 0.7}, False),
        ("opt in ['adam', 'adamw']", {"opt": "adamw"}, True),
        ("opt not in ('sgd',)", {"opt": "sgd"}, False),
        ("opt == 'sgd' or a > 3", {"opt": "adam", "a": 4}, True),
        ("not (a < b)", {"a": 1, "b": 2}, False),
        ("a + b * 2 == 7", {"a": 1, "b": 3}, True),
        ("a // b == 2 and a % b == 1", {"a": 7, "b": 3}, True),
        ("a / b > 0.3", {"a": 1, "b": 3}, True),
        ("-a < +b", {"a": 1, "b": 3}, True),
        ("a ** 2 >= 9", {"a": 3}, True),
        ("a in [-1, 2]", {"a": -1}, True),
        ("True", {}, True),
    ],
)
def test_evaluates_allowed_expressions(source: str, values: dict, expected: bool) -> None:
    assert compile_expression(source, NAMES).holds(values) is expected


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("__import__('os').system('true')", "function call"),
        ("open('x')", "function call"),
        ("a.real > 0", "attribute access"),
        ("opt[0] == 'a'", "subscripting"),
        ("[x for x in 'ab']", "comprehension"),
        ("(lambda: 1)()", "function call"),
        ("lambda: 1", "lambda"),
        ("f'{a}' == '1'", "f-string"),
        ("unknown > 1", "not a parameter"),
        ("a ** 1000 > 1", "exponents are limited"),
        ("a ** b > 1", "literal number as its exponent"),
        ("9 ** 9 ** 9", "literal number as its exponent"),
        ("a if b else 1", "conditional expression"),
        ("(a := 3) > 1", "assignment"),
        ("a is None", "'is'"),
        ("a & b", "'&'"),
        ("opt in other", "literal list"),
        ("{'a': 1}", "dict literal"),
        ("a >", "not a valid expression"),
        ("", "is empty"),
        ("a\n> 1", "control characters"),
        ("-" * 100 + "a", "nested"),
        ("a+" * 150 + "a", "nested"),
        ("a == 1 or " * 80 + "a == 1", "more than 200 elements"),
        ("a in [" + ",".join(["1"] * 250) + "]", "list longer than"),
        ("x" * 2000, "longer than"),
    ],
)
def test_rejects_everything_else_at_load_time(source: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match=problem):
        compile_expression(source, NAMES)


def test_redundant_parentheses_are_harmless() -> None:
    assert compile_expression("(" * 200 + "a" + ")" * 200, NAMES).evaluate({"a": 3}) == 3


def test_rejects_non_strings() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        compile_expression(3, NAMES)


@pytest.mark.parametrize(
    ("source", "values", "problem"),
    [
        ("a / b > 1", {"a": 1, "b": 0}, "division by zero"),
        ("opt * 1000 == 'x'", {"opt": "abc"}, "needs numbers"),
        ("a < opt", {"a": 1, "opt": "x"}, "could not be evaluated"),
    ],
)
def test_evaluation_errors_are_expression_errors(source: str, values: dict, problem: str) -> None:
    expression = compile_expression(source, NAMES)
    with pytest.raises(ExpressionError, match=problem):
        expression.evaluate(values)


def test_records_the_names_it_uses() -> None:
    assert compile_expression("lora_alpha >= 2 * lora_r", NAMES).names == {"lora_alpha", "lora_r"}


def test_compiled_expressions_pickle_by_source() -> None:
    expression = compile_expression("a < b", NAMES)
    again = pickle.loads(pickle.dumps(expression))
    assert again.source == "a < b"
    assert again.holds({"a": 1, "b": 2})
