"""Search spaces: parameters, constraints and goals in UGRO's schema, parsed once and checked,
with a safe evaluator for their expressions and define-by-run sampling."""

from ugro_hpo.space.expressions import Expression, ExpressionError, compile_expression
from ugro_hpo.space.parsing import load_search_space, parse_search_space
from ugro_hpo.space.search_space import Goal, Parameter, Proposal, SearchSpace

__all__ = [
    "Expression",
    "ExpressionError",
    "Goal",
    "Parameter",
    "Proposal",
    "SearchSpace",
    "compile_expression",
    "load_search_space",
    "parse_search_space",
]
