"""Event payloads built from rows, shared by the services that emit them."""

from __future__ import annotations

from typing import Any

from agentmaestro.common.time import iso
from agentmaestro.runs.models import AgentStep, ToolCall
from agentmaestro.runs.states import TOOL_CALL_FINAL


def tool_call_updated_payload(call: ToolCall) -> dict[str, Any]:
    return {
        "id": str(call.id),
        "status": call.status,
        "attempt": call.attempt,
        "result": call.result,
        "error": call.error,
        "started_at": iso(call.started_at),
        "finished_at": iso(call.finished_at),
    }


# A step's and a new call's times are not in these payloads: they are the time of the
# event that announces them (its envelope's ``created_at``), so every writer stamps the
# rows and appends their events with one clock reading (``append_events(now=...)``).


def step_created_payload(step: AgentStep) -> dict[str, Any]:
    return {
        "index": step.index,
        "kind": step.kind,
        "status": step.status,
        "payload": step.payload,
    }


def step_updated_payload(step: AgentStep, *, with_payload: bool = True) -> dict[str, Any]:
    return {
        "index": step.index,
        "status": step.status,
        "payload": step.payload if with_payload else None,
    }


def tool_call_created_payload(call: ToolCall, step_index: int | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(call.id),
        "step_index": step_index,
        "tool_name": call.tool_name,
        "provider_call_id": call.provider_call_id,
        "arguments": call.arguments,
        "status": call.status,
    }
    if call.status in TOOL_CALL_FINAL:
        # Created finished (refused, or a built-in run inside the step): one event says
        # it all, as a tool_call.updated would.
        payload.update(attempt=call.attempt, result=call.result, error=call.error)
    return payload
