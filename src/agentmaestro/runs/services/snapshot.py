"""A run's snapshot: its state as of ``last_seq``. The contract is in docs/snapshots.md."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection, transaction
from django.db.models import TextField
from django.db.models.functions import Cast

from agentmaestro.common.errors import NotFound
from agentmaestro.common.time import iso, iso_from_db_text
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall, idempotency_key

Snapshot = dict[str, Any]


def run_snapshot(run_id: uuid.UUID) -> Snapshot:
    """The run, its steps and tool calls, consistent with the ``last_seq`` it reports.

    Every change to a run bumps ``last_seq`` in the same transaction; holding a share
    lock on the run row while reading keeps those writers out, so the rows read are
    exactly the state after event ``last_seq``.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Read and share-lock the run in one statement (Django has no FOR SHARE).
            run = next(
                iter(
                    AgentRun.objects.raw(
                        "SELECT * FROM runs_agentrun WHERE id = %s FOR SHARE", [run_id]
                    )
                ),
                None,
            )
        else:
            run = AgentRun.objects.filter(id=run_id).first()
        if run is None:
            raise NotFound("No such run.", details={"run_id": str(run_id)})
        # Plain rows, not model instances: a run of a few hundred steps spent most of its
        # snapshot time building models (bench/api.py, snapshot of a 1,000-event run).
        steps = list(
            AgentStep.objects.filter(run_id=run_id)
            .order_by("index")
            .annotate(**_as_text("created_at", "finished_at"))
            .values_list(*_STEP_COLUMNS)
        )
        calls = list(
            ToolCall.objects.filter(run_id=run_id)
            .annotate(**_as_text("created_at", "started_at", "finished_at"))
            .values_list(*_CALL_COLUMNS)
        )
    return {
        "run": run_fields(run),
        "steps": [_step_row(row) for row in steps],
        "tool_calls": sorted((_call_row(run.id, row) for row in calls), key=_tool_call_order),
        "last_seq": run.last_seq,
    }


def _as_text(*columns: str) -> dict[str, Cast]:
    return {f"{column}_text": Cast(column, TextField()) for column in columns}


_STEP_COLUMNS = ("index", "kind", "status", "payload", "created_at_text", "finished_at_text")
_CALL_COLUMNS = (
    "id",
    "step__index",
    "tool_name",
    "provider_call_id",
    "arguments",
    "status",
    "attempt",
    "result",
    "error",
    "created_at_text",
    "started_at_text",
    "finished_at_text",
)


def _step_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """A step as the snapshot shows it, from a row of ``_STEP_COLUMNS``."""
    index, kind, status, payload, created_at, finished_at = row
    return {
        "index": index,
        "kind": kind,
        "status": status,
        "payload": payload,
        "created_at": iso_from_db_text(created_at),
        "finished_at": iso_from_db_text(finished_at),
    }


def _call_row(run_id: uuid.UUID, row: tuple[Any, ...]) -> dict[str, Any]:
    """A tool call as the snapshot shows it, from a row of ``_CALL_COLUMNS``."""
    (call_id, step_index, tool_name, provider_call_id, arguments, status, attempt) = row[:7]
    result, error, created_at, started_at, finished_at = row[7:]
    return {
        "id": str(call_id),
        "step_index": step_index,
        "tool_name": tool_name,
        "provider_call_id": provider_call_id,
        "arguments": arguments,
        "status": status,
        "attempt": attempt,
        "result": result,
        "error": error,
        "idempotency_key": idempotency_key(run_id, call_id),
        "created_at": iso_from_db_text(created_at),
        "started_at": iso_from_db_text(started_at),
        "finished_at": iso_from_db_text(finished_at),
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


def _tool_call_order(call: dict[str, Any]) -> tuple[str, str]:
    return (call["created_at"], call["id"])
