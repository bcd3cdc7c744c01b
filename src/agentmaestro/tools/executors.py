"""Run a tool call through the executor its definition names.

Built-in tools run here, in the worker. The toolrunner and sub-agent executors plug in
beside them (later issues) without changes to the engine: the engine only calls
:func:`execute_tool` and records the :class:`ToolOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from agentmaestro.runs.models import ToolCall
from agentmaestro.tools.builtins import BUILTIN_TOOLS, ToolFailed
from agentmaestro.tools.models import ExecutorKind, ToolExecution


@dataclass(frozen=True)
class ToolOutcome:
    result: Any = None
    error: dict[str, str] | None = None


def execute_tool(call: ToolCall) -> ToolOutcome:
    tool = call.tool
    if tool is None:
        return ToolOutcome(
            error={"code": "unknown_tool", "message": f"No tool {call.tool_name!r}."}
        )
    if tool.executor == ExecutorKind.BUILTIN:
        return _execute_builtin(call)
    return ToolOutcome(
        error={
            "code": "executor_unavailable",
            "message": f"The {tool.executor} executor is not available yet.",
        }
    )


def _execute_builtin(call: ToolCall) -> ToolOutcome:
    builtin = BUILTIN_TOOLS.get(call.tool_name)
    if builtin is None:
        return ToolOutcome(
            error={"code": "unknown_tool", "message": f"No built-in tool {call.tool_name!r}."}
        )
    # The record and the tool's own database effects commit together, so a call is
    # executed at most once per idempotency key however often it is delivered.
    try:
        with transaction.atomic():
            done = (
                ToolExecution.objects.select_for_update()
                .filter(idempotency_key=call.idempotency_key)
                .first()
            )
            if done is not None:
                return ToolOutcome(result=done.result, error=done.error)
            try:
                outcome = ToolOutcome(result=builtin.run(call.arguments))
            except ToolFailed as failed:
                outcome = ToolOutcome(error={"code": failed.code, "message": failed.message})
            ToolExecution.objects.create(
                idempotency_key=call.idempotency_key,
                tool_name=call.tool_name,
                result=outcome.result,
                error=outcome.error,
            )
            return outcome
    except IntegrityError:
        # A concurrent delivery recorded it first; its outcome is the outcome.
        done = ToolExecution.objects.get(idempotency_key=call.idempotency_key)
        return ToolOutcome(result=done.result, error=done.error)
