"""Run a tool call through the executor its definition names.

Built-in tools run here, in the worker. The toolrunner and sub-agent executors plug in
beside them (later issues) without changes to the engine: the engine only calls
:func:`execute_tool` and records the :class:`ToolOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction

from agentmaestro.runs.models import ToolCall
from agentmaestro.tools.builtins import BUILTIN_TOOLS, run_builtin
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
    if call.tool_name not in BUILTIN_TOOLS:
        result, error = run_builtin(call.tool_name, call.arguments)
        return ToolOutcome(result, error)
    # The record and the tool's own database effects commit together, so a call is
    # executed at most once per idempotency key however often it is delivered.
    try:
        with transaction.atomic():
            _serialize_deliveries(call.idempotency_key)
            done = (
                ToolExecution.objects.select_for_update()
                .filter(idempotency_key=call.idempotency_key)
                .first()
            )
            if done is not None:
                return ToolOutcome(result=done.result, error=done.error)
            outcome = ToolOutcome(*run_builtin(call.tool_name, call.arguments))
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


def _serialize_deliveries(idempotency_key: str) -> None:
    """Make a second delivery of one key wait until the first commits (or rolls back).

    Locking the ToolExecution row is not enough: before the first delivery commits there
    is no row to lock, so two deliveries at once (a lease that expired under a slow tool)
    would both run the tool. A transaction-scoped advisory lock on the key closes that
    gap; the second delivery then finds the first one's record. SQLite needs nothing:
    its write transactions already run one at a time.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [idempotency_key]
            )
