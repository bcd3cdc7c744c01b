"""Fold a run's event log into the snapshot it describes. Pure: no database.

``fold(events) == run_snapshot(run_id)`` for every run is the replay invariant; the
test suite checks it for every run it creates (tests/conftest.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from agentmaestro.common.time import iso
from agentmaestro.runs.events.types import StoredEvent
from agentmaestro.runs.models import idempotency_key
from agentmaestro.runs.states import TOOL_CALL_FINAL, RunStatus, StepStatus


class ReplayError(Exception):
    pass


def _add_usage(run: dict[str, Any], p: dict[str, Any]) -> None:
    """A model turn announced completed adds its usage to the run's totals.

    (Logs written before the engine stopped sending ``run.usage_updated`` after each
    turn also carry that event, whose totals then replace the sum: the same numbers.)
    """
    usage = (p.get("payload") or {}).get("usage")
    if p.get("status") == "COMPLETED" and isinstance(usage, dict):
        run["usage"]["input_tokens"] += usage.get("input_tokens") or 0
        run["usage"]["output_tokens"] += usage.get("output_tokens") or 0


def fold(events: Iterable[StoredEvent]) -> dict[str, Any]:
    run: dict[str, Any] | None = None
    steps: dict[int, dict[str, Any]] = {}
    calls: dict[str, dict[str, Any]] = {}
    last_seq = 0
    for event in events:
        if event.seq != last_seq + 1:
            raise ReplayError(f"expected seq {last_seq + 1}, got {event.seq}")
        last_seq = event.seq
        p = copy.deepcopy(event.payload)
        at = iso(event.created_at)
        if event.type == "run.created":
            if run is not None:
                raise ReplayError("run.created twice")
            run = {
                "id": str(event.run_id),
                "workspace_id": p["workspace_id"],
                "agent_id": p["agent_id"],
                "status": RunStatus.PENDING.value,
                "input": p["input"],
                "output": None,
                "error": None,
                "parent_run_id": p["parent_run_id"],
                "parent_tool_call_id": p["parent_tool_call_id"],
                "created_by_id": p["created_by_id"],
                "created_at": p["created_at"],
                "started_at": None,
                "finished_at": None,
                "step_count": 0,
                "tool_call_count": 0,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
            continue
        if run is None:
            raise ReplayError(f"{event.type} before run.created")
        match event.type:
            case "run.status_changed":
                if run["status"] != p["from_status"]:
                    raise ReplayError(
                        f"seq {event.seq}: moves from {p['from_status']}, "
                        f"but the run is {run['status']}"
                    )
                to_status = RunStatus(p["to_status"])
                run["status"] = to_status.value
                if to_status is RunStatus.RUNNING and run["started_at"] is None:
                    run["started_at"] = p["at"]
                if to_status.is_terminal:
                    run["finished_at"] = p["at"]
                    run["output"] = p["output"]
                    run["error"] = p["error"]
            case "run.usage_updated":
                run["usage"] = {
                    "input_tokens": p["input_tokens"],
                    "output_tokens": p["output_tokens"],
                }
            case "run.note":
                pass
            # A step's and a new call's times are the event's own (the contracts say so).
            case "step.created":
                _add_usage(run, p)
                steps[p["index"]] = {
                    "index": p["index"],
                    "kind": p["kind"],
                    "status": p["status"],
                    "payload": p["payload"],
                    "created_at": at,
                    "finished_at": None if p["status"] == StepStatus.STARTED else at,
                }
                run["step_count"] = max(run["step_count"], p["index"])
            case "step.updated":
                _add_usage(run, p)
                step = steps[p["index"]]
                step["status"] = p["status"]
                if p.get("payload") is not None:
                    step["payload"] = p["payload"]
                step["finished_at"] = None if p["status"] == StepStatus.STARTED else at
            case "tool_call.created":
                finished = p["status"] in TOOL_CALL_FINAL
                calls[p["id"]] = {
                    "id": p["id"],
                    "step_index": p["step_index"],
                    "tool_name": p["tool_name"],
                    "provider_call_id": p["provider_call_id"],
                    "arguments": p["arguments"],
                    "status": p["status"],
                    # A call created finished carries its outcome (the contract's note).
                    "attempt": p.get("attempt", 0),
                    "result": p.get("result"),
                    "error": p.get("error"),
                    "idempotency_key": idempotency_key(event.run_id, p["id"]),
                    "created_at": at,
                    "started_at": at if finished and p.get("attempt") else None,
                    "finished_at": at if finished else None,
                }
                run["tool_call_count"] += 1
            case "tool_call.updated":
                call = calls[p["id"]]
                for name in ("status", "attempt", "result", "error", "started_at", "finished_at"):
                    call[name] = p.get(name)
            case _:
                raise ReplayError(f"no fold rule for event type {event.type!r}")
    if run is None:
        raise ReplayError("no events")
    return {
        "run": run,
        "steps": [steps[i] for i in sorted(steps)],
        "tool_calls": sorted(calls.values(), key=lambda c: (c["created_at"], c["id"])),
        "last_seq": last_seq,
    }
