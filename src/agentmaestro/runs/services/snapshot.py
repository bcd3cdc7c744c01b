"""A run's snapshot: its state as of ``last_seq``. The contract is in docs/snapshots.md."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection, transaction

from agentmaestro.common.errors import NotFound
from agentmaestro.common.time import iso
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall

Snapshot = dict[str, Any]


def run_snapshot(run_id: uuid.UUID) -> Snapshot:
    """The run, its steps and tool calls, consistent with the ``last_seq`` it reports.

    Every change to a run bumps ``last_seq`` in the same transaction; holding a share
    lock on the run row while reading keeps those writers out, so the rows read are
    exactly the state after event ``last_seq``.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM runs_agentrun WHERE id = %s FOR SHARE", [run_id])
        run = AgentRun.objects.filter(id=run_id).first()
        if run is None:
            raise NotFound("No such run.", details={"run_id": str(run_id)})
        steps = list(AgentStep.objects.filter(run_id=run_id).order_by("index"))
        calls = list(ToolCall.objects.filter(run_id=run_id).select_related("step"))
    return {
        "run": run_fields(run),
        "steps": [step_fields(step) for step in steps],
        "tool_calls": sorted((tool_call_fields(c) for c in calls), key=_tool_call_order),
        "last_seq": run.last_seq,
    }


def run_fields(run: AgentRun) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "workspace_id": str(run.workspace_id),
        "agent_id": str(run.agent_id),
        "status": run.status,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "parent_run_id": str(run.parent_run_id) if run.parent_run_id else None,
        "parent_tool_call_id": str(run.parent_tool_call_id) if run.parent_tool_call_id else None,
        "created_by_id": run.created_by_id,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "step_count": run.step_count,
        "tool_call_count": run.tool_call_count,
        "usage": {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens},
    }


def step_fields(step: AgentStep) -> dict[str, Any]:
    return {
        "index": step.index,
        "kind": step.kind,
        "status": step.status,
        "payload": step.payload,
        "created_at": iso(step.created_at),
        "finished_at": iso(step.finished_at),
    }


def tool_call_fields(call: ToolCall) -> dict[str, Any]:
    return {
        "id": str(call.id),
        "step_index": call.step.index if call.step_id and call.step else None,
        "tool_name": call.tool_name,
        "provider_call_id": call.provider_call_id,
        "arguments": call.arguments,
        "status": call.status,
        "attempt": call.attempt,
        "result": call.result,
        "error": call.error,
        "idempotency_key": call.idempotency_key,
        "created_at": iso(call.created_at),
        "started_at": iso(call.started_at),
        "finished_at": iso(call.finished_at),
    }


def _tool_call_order(call: dict[str, Any]) -> tuple[str, str]:
    return (call["created_at"], call["id"])
