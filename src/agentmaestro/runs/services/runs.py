from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentmaestro.agents.models import Agent
from agentmaestro.common.errors import AppError, Conflict, NotFound
from agentmaestro.common.time import iso
from agentmaestro.runs import dispatch
from agentmaestro.runs.events.store import append_event, append_events
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.services.payloads import step_updated_payload, tool_call_updated_payload
from agentmaestro.runs.services.transitions import plan_transition
from agentmaestro.runs.states import TOOL_CALL_FINAL, RunStatus, StepStatus, ToolCallStatus


class RunAlreadyFinished(Conflict):
    code = "run_already_finished"


class IdempotencyKeyReused(AppError):
    code = "idempotency_key_reused"
    http_status = 422


def run_create(
    *,
    agent: Agent,
    input: Any,
    created_by: AbstractBaseUser | None = None,
    parent_run: AgentRun | None = None,
    parent_tool_call: ToolCall | None = None,
    idempotency_key: str | None = None,
) -> AgentRun:
    """Create a PENDING run of ``agent``; its log starts with ``run.created`` at seq 1."""
    with transaction.atomic():
        run = AgentRun.objects.create(
            workspace_id=agent.workspace_id,
            agent=agent,
            input=input,
            created_by_id=created_by.pk if created_by is not None else None,
            parent_run=parent_run,
            parent_tool_call=parent_tool_call,
            idempotency_key=idempotency_key,
        )
        event = append_event(
            run.id,
            "run.created",
            {
                "workspace_id": str(run.workspace_id),
                "agent_id": str(run.agent_id),
                "input": run.input,
                "parent_run_id": str(parent_run.id) if parent_run else None,
                "parent_tool_call_id": str(parent_tool_call.id) if parent_tool_call else None,
                "created_by_id": run.created_by_id,
                "created_at": iso(run.created_at),
            },
        )
        run.last_seq = event.seq
    return run


def run_start(
    *,
    agent: Agent,
    input: Any,
    created_by: AbstractBaseUser | None = None,
    idempotency_key: str | None = None,
) -> tuple[AgentRun, bool]:
    """Create a run and enqueue its first tick once the creation has committed.

    Returns ``(run, created)``. With an ``idempotency_key``, a second call with the same
    key in the agent's workspace returns the first call's run (``created`` False) when it
    asked for the same agent and input, and raises :class:`IdempotencyKeyReused` when it
    asked for something else. Two concurrent calls with one key are decided by the unique
    constraint on ``(workspace, idempotency_key)``: the second INSERT waits for the first
    transaction and then fails, and that call returns the committed run.
    """
    if idempotency_key is not None:
        existing = _run_by_key(agent.workspace_id, idempotency_key)
        if existing is not None:
            return _same_request(existing, agent=agent, input=input), False
    try:
        with transaction.atomic():
            run = run_create(
                agent=agent, input=input, created_by=created_by, idempotency_key=idempotency_key
            )
            transaction.on_commit(lambda: dispatch.enqueue_tick(run.id))
    except IntegrityError:
        existing = _run_by_key(agent.workspace_id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise  # not the idempotency constraint: a real error
        return _same_request(existing, agent=agent, input=input), False
    return run, True


def _run_by_key(workspace_id: uuid.UUID, key: str) -> AgentRun | None:
    return AgentRun.objects.filter(workspace_id=workspace_id, idempotency_key=key).first()


def _same_request(run: AgentRun, *, agent: Agent, input: Any) -> AgentRun:
    # Compared as stored: the input went through JSON into the database and back.
    if run.agent_id != agent.id or run.input != input:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request.",
            details={"idempotency_key": run.idempotency_key, "run_id": str(run.id)},
        )
    return run


def run_cancel(
    *, run_id: uuid.UUID, by: AbstractBaseUser | None = None, reason: str = ""
) -> AgentRun:
    """Cancel a run that has not finished: its open tool calls are cancelled with it.

    Cancelling a finished run raises :class:`RunAlreadyFinished`.
    """
    with transaction.atomic():
        run = AgentRun.objects.select_for_update().filter(id=run_id).first()
        if run is None:
            raise NotFound("No such run.", details={"run_id": str(run_id)})
        status = RunStatus(run.status)
        if status.is_terminal:
            raise RunAlreadyFinished(
                f"The run already ended ({status}).", details={"status": status.value}
            )
        now = timezone.now()
        who = getattr(by, "username", None) or "system"
        message = reason or f"Cancelled by {who}."
        plan = plan_transition(
            from_status=status,
            to_status=RunStatus.CANCELLED,
            started_at=run.started_at,
            at=now,
            reason="cancelled",
            error={"code": "cancelled", "message": message},
        )
        events = close_open_work(run_id, now)
        AgentRun.objects.filter(id=run_id).update(**plan.fields)
        for name, value in plan.fields.items():
            setattr(run, name, value)
        events.append(NewEvent("run.status_changed", plan.event_payload))
        run.last_seq = append_events(run.id, events, now=now)[-1].seq
    return run


def close_open_work(run_id: uuid.UUID, now: datetime) -> list[NewEvent]:
    """Cancel a run's unfinished tool calls and model calls, as it ends; return the events.

    Call with the run row locked. A late activity result then finds its row closed and
    is discarded, and a queued tool call never runs.
    """
    events = []
    for call in ToolCall.objects.filter(run_id=run_id).exclude(status__in=list(TOOL_CALL_FINAL)):
        call.status = ToolCallStatus.CANCELLED
        call.finished_at = now
        call.lease_expires_at = None
        call.save(update_fields=["status", "finished_at", "lease_expires_at"])
        events.append(NewEvent("tool_call.updated", tool_call_updated_payload(call)))
    for step in AgentStep.objects.filter(run_id=run_id, status=StepStatus.STARTED):
        step.status = StepStatus.CANCELLED
        step.finished_at = now
        step.lease_expires_at = None
        step.save(update_fields=["status", "finished_at", "lease_expires_at"])
        events.append(NewEvent("step.updated", step_updated_payload(step, with_payload=False)))
    return events


def run_add_note(*, run_id: uuid.UUID, message: str, source: str = "system") -> int:
    """Append a ``run.note`` event; returns its seq."""
    return append_event(run_id, "run.note", {"message": message, "source": source}).seq


def run_record_usage(*, run_id: uuid.UUID, input_tokens: int, output_tokens: int) -> AgentRun:
    """Add token usage to the run's totals and record the new totals."""
    with transaction.atomic():
        run = AgentRun.objects.select_for_update().get(id=run_id)
        run.input_tokens += input_tokens
        run.output_tokens += output_tokens
        run.save(update_fields=["input_tokens", "output_tokens"])
        append_event(
            run_id,
            "run.usage_updated",
            {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens},
        )
    return run
