"""Tools that run inside the worker, needing no service: calculator, current time, echo."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ToolFailed(Exception):
    """The tool ran and failed; the message becomes an error observation for the model."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    description: str
    schema: dict[str, Any]
    run: Callable[[dict[str, Any]], Any]


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise ToolFailed("invalid_expression", "Only numbers are allowed.")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ToolFailed("too_large", "Exponents above 64 are refused.")
        return _OPERATORS[type(node.op)](left, right)  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    raise ToolFailed("invalid_expression", "Only numbers and + - * / // % ** ( ) are allowed.")


def calculator(args: dict[str, Any]) -> dict[str, Any]:
    expression = args["expression"]
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ToolFailed(
            "invalid_expression", f"Not an arithmetic expression: {expression!r}"
        ) from None
    try:
        return {"value": _evaluate(tree)}
    except ZeroDivisionError:
        raise ToolFailed("division_by_zero", "Division by zero.") from None


def current_time(args: dict[str, Any]) -> dict[str, Any]:
    name = args.get("timezone", "UTC")
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolFailed("unknown_timezone", f"Unknown time zone {name!r}.") from None
    return {"now": datetime.now(UTC).astimezone(zone).isoformat(), "timezone": name}


def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args.get("value")}


BUILTIN_TOOLS: dict[str, BuiltinTool] = {
    tool.name: tool
    for tool in [
        BuiltinTool(
            "calculator",
            "Evaluate an arithmetic expression.",
            {
                "type": "object",
                "properties": {"expression": {"type": "string", "maxLength": 200}},
                "required": ["expression"],
                "additionalProperties": False,
            },
            calculator,
        ),
        BuiltinTool(
            "current_time",
            "The current date and time in a time zone (IANA name, default UTC).",
            {
                "type": "object",
                "properties": {"timezone": {"type": "string", "maxLength": 64}},
                "additionalProperties": False,
            },
            current_time,
        ),
        BuiltinTool(
            "echo",
            "Return the given value unchanged.",
            {
                "type": "object",
                "properties": {"value": {}},
                "required": ["value"],
                "additionalProperties": False,
            },
            echo,
        ),
    ]
}


def run_builtin(name: str, arguments: Any) -> tuple[Any, dict[str, str] | None]:
    """Run a built-in tool: ``(result, None)``, or ``(None, error)`` for the model to see.

    Pure computation, bounded by each tool's schema (no I/O, no side effects), so the
    engine may run it inside a step (docs/engine.md, "Built-in tools").
    """
    builtin = BUILTIN_TOOLS.get(name)
    if builtin is None:
        return None, {"code": "unknown_tool", "message": f"No built-in tool {name!r}."}
    try:
        return builtin.run(arguments), None
    except ToolFailed as failed:
        return None, {"code": failed.code, "message": failed.message}
