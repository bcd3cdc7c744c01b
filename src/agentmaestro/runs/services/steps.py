from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agentmaestro.common.errors import NotFound
from agentmaestro.runs.events.store import append_event, append_events
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.services.payloads import (
    step_created_payload,
    step_updated_payload,
    tool_call_created_payload,
    tool_call_updated_payload,
)
from agentmaestro.runs.states import TOOL_CALL_FINAL, StepKind, StepStatus, ToolCallStatus


def step_append(
    *,
    run_id: uuid.UUID,
    kind: StepKind,
    payload: dict[str, Any],
    status: StepStatus = StepStatus.STARTED,
) -> AgentStep:
    """Append a step; its index is the run's next one (1, 2, …)."""
    with transaction.atomic():
        updated = AgentRun.objects.filter(id=run_id).update(step_count=F("step_count") + 1)
        if not updated:
            raise NotFound("No such run.", details={"run_id": str(run_id)})
        index = AgentRun.objects.values_list("step_count", flat=True).get(id=run_id)
        now = timezone.now()
        finished = now if status is not StepStatus.STARTED else None
        step = AgentStep.objects.create(
            run_id=run_id,
            index=index,
            kind=kind,
            status=status,
            payload=payload,
            created_at=now,
            finished_at=finished,
        )
        events = [NewEvent("step.created", step_created_payload(step))]
        if finished is not None:
            events.append(NewEvent("step.updated", step_updated_payload(step, with_payload=False)))
        append_events(run_id, events, now=now)
    return step


def step_update(
    *,
    run_id: uuid.UUID,
    index: int,
    status: StepStatus,
    payload: dict[str, Any] | None = None,
) -> AgentStep:
    with transaction.atomic():
        step = AgentStep.objects.select_for_update().filter(run_id=run_id, index=index).first()
        if step is None:
            raise NotFound("No such step.", details={"run_id": str(run_id), "index": index})
        step.status = status
        if payload is not None:
            step.payload = payload
        now = timezone.now()
        step.finished_at = None if status is StepStatus.STARTED else now
        step.save(update_fields=["status", "payload", "finished_at"])
        append_event(
            run_id,
            "step.updated",
            step_updated_payload(step, with_payload=payload is not None),
            now=now,
        )
    return step


def tool_call_create(
    *,
    run_id: uuid.UUID,
    step: AgentStep | None,
    tool_name: str,
    arguments: Any,
    provider_call_id: str = "",
    status: ToolCallStatus = ToolCallStatus.PENDING,
) -> ToolCall:
    with transaction.atomic():
        AgentRun.objects.filter(id=run_id).update(tool_call_count=F("tool_call_count") + 1)
        now = timezone.now()
        call = ToolCall.objects.create(
            id=uuid.uuid4(),
            run_id=run_id,
            step=step,
            tool_name=tool_name,
            provider_call_id=provider_call_id,
            arguments=arguments,
            status=status,
            created_at=now,
            # Created finished, it finished then (tool_call.created's contract).
            finished_at=now if status in TOOL_CALL_FINAL else None,
        )
        append_event(
            run_id,
            "tool_call.created",
            tool_call_created_payload(call, step.index if step else None),
            now=now,
        )
    return call


def tool_call_update(
    *,
    call_id: uuid.UUID,
    status: ToolCallStatus,
    result: Any = None,
    error: dict[str, str] | None = None,
    attempt: int | None = None,
) -> ToolCall:
    with transaction.atomic():
        call = ToolCall.objects.select_for_update().filter(id=call_id).first()
        if call is None:
            raise NotFound("No such tool call.", details={"tool_call_id": str(call_id)})
        now = timezone.now()
        call.status = status
        call.result = result
        call.error = error
        if attempt is not None:
            call.attempt = attempt
        if status is ToolCallStatus.RUNNING and call.started_at is None:
            call.started_at = now
        if status in TOOL_CALL_FINAL:
            call.finished_at = now
        call.save()
        append_event(call.run_id, "tool_call.updated", tool_call_updated_payload(call))
    return call
