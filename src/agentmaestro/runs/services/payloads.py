"""Event payloads built from rows, shared by the services that emit them."""

from __future__ import annotations

from typing import Any

from agentmaestro.common.time import iso
from agentmaestro.runs.models import ToolCall


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
