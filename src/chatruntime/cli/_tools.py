"""The tools the REPL's default agent may call: harmless, and useful with a real model."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from datetime import UTC, datetime

from ..agent import ToolRegistry

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
# A model may ask for 9**9**9; refusing big powers keeps a tool call from hanging the REPL.
_MAX_EXPONENT = 1000
_MAX_LENGTH = 200


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.

    Args:
        expression: For example ``"(2 + 3) * 7"``.
    """
    if len(expression) > _MAX_LENGTH:
        return f"error: the expression is longer than {_MAX_LENGTH} characters"
    try:
        value = _evaluate(ast.parse(expression, mode="eval").body)
    except SyntaxError:
        return f"error: not an arithmetic expression: {expression}"
    except (ValueError, ZeroDivisionError, OverflowError) as error:
        return f"error: {error}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _evaluate(node: ast.expr) -> float:
    # bool is an int subclass; True + True is not arithmetic anyone typed.
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise ValueError(f"not a number: {node.value}")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError(f"exponents above {_MAX_EXPONENT} are not supported")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"only numbers and + - * / // % ** are supported, not {ast.unparse(node)}")


def current_time() -> str:
    """The current date and time in UTC, in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def repl_tools() -> ToolRegistry:
    """A registry holding the REPL's tools, ``calculate`` and ``current_time``."""
    return ToolRegistry([calculate, current_time])


REPL_TOOL_NAMES = ("calculate", "current_time")
"""The tools the REPL's default agent is created with."""
