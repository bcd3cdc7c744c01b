"""Activities: the slow parts of a run (model calls, tool calls), outside any transaction.

Each activity
1. claims its row with a conditional update — the row must still be open and unleased
   (or its lease expired); the claim bumps ``attempt``, the fencing token;
2. does its I/O with no transaction open and its database connection released;
3. writes its result with a conditional update naming that attempt, so the result of
   an attempt that was superseded (lease expired, run cancelled) is discarded;
4. enqueues the run's next tick after that commit.

Lock order everywhere: the run row first, then the step or tool call.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from agentmaestro.agents.providers import get_provider
from agentmaestro.agents.providers.base import (
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ToolSpec,
)
from agentmaestro.runs import dispatch
from agentmaestro.runs.engine.state import requested_calls
from agentmaestro.runs.events.broadcast import broadcaster, run_group
from agentmaestro.runs.events.store import append_events
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.services.payloads import step_updated_payload, tool_call_updated_payload
from agentmaestro.runs.states import StepKind, StepStatus, ToolCallStatus
from agentmaestro.tools.executors import execute_tool
from agentmaestro.tools.models import ToolDefinition

logger = logging.getLogger(__name__)

# How long a claimed model call may run before the reconciler may hand it to another
# worker. Above the provider timeout, so a live attempt is never pre-empted.
MODEL_LEASE = timedelta(seconds=120)
TOOL_LEASE_GRACE = timedelta(seconds=30)


@dataclass(frozen=True)
class Claim:
    run_id: uuid.UUID
    attempt: int


# Model calls --------------------------------------------------------------------------


def claim_model_call(step_id: int) -> Claim | None:
    now = timezone.now()
    with transaction.atomic():
        row = AgentStep.objects.filter(id=step_id).values_list("run_id", flat=True).first()
        if row is None:
            return None
        AgentRun.objects.select_for_update().filter(id=row).values_list("id", flat=True).first()
        claimed = (
            AgentStep.objects.filter(id=step_id, status=StepStatus.STARTED)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
            .update(attempt=F("attempt") + 1, lease_expires_at=now + MODEL_LEASE)
        )
        if claimed != 1:
            return None  # done, cancelled, or another worker holds a live lease: fine
        attempt = AgentStep.objects.values_list("attempt", flat=True).get(id=step_id)
    return Claim(run_id=row, attempt=attempt)


def build_model_request(run_id: uuid.UUID, step_id: int) -> tuple[str, ModelRequest]:
    run = AgentRun.objects.select_related("agent").get(id=run_id)
    agent = run.agent
    settings: dict[str, Any] = dict(agent.model_settings or {})
    messages: list[Message] = []
    if agent.system_prompt:
        messages.append(Message("system", agent.system_prompt))
    prompt = run.input.get("prompt") if isinstance(run.input, dict) else None
    messages.append(Message("user", prompt if isinstance(prompt, str) else json.dumps(run.input)))
    turn = 0
    for step in AgentStep.objects.filter(run_id=run_id).exclude(id=step_id).order_by("index"):
        if step.kind == StepKind.MODEL_CALL and step.status == StepStatus.COMPLETED:
            turn += 1
            messages.append(
                Message(
                    "assistant",
                    step.payload.get("text") or "",
                    tool_calls=requested_calls(step.payload),
                )
            )
        elif step.kind == StepKind.OBSERVATION:
            content = step.payload.get("result", step.payload.get("error"))
            messages.append(
                Message(
                    "tool",
                    json.dumps(content),
                    tool_call_id=step.payload.get("provider_call_id") or None,
                    name=step.payload.get("tool_name"),
                )
            )
    offered = [name for name, p in (agent.tool_policy or {}).items() if p.get("mode") != "deny"]
    tools = tuple(
        ToolSpec(t.name, t.description, t.args_schema)
        for t in ToolDefinition.objects.filter(workspace_id=run.workspace_id, name__in=offered)
    )
    request = ModelRequest(
        model=str(settings.get("model", "")),
        messages=tuple(messages),
        tools=tools,
        settings=settings,
        turn=turn,
        # Capped below the lease, so a live call is never handed to a second worker.
        timeout_seconds=min(
            float(settings.get("timeout_seconds", 60)),
            (MODEL_LEASE - timedelta(seconds=30)).total_seconds(),
        ),
    )
    return str(settings.get("provider", "scripted")), request


def run_model_call(step_id: int, claim: Claim) -> ModelResponse:
    """Call the model. Raises ProviderError; never holds a transaction or connection."""
    provider_name, request = build_model_request(claim.run_id, step_id)
    connection.close()  # back to the pool: 1,000 calls in flight must not hold 1,000
    group = run_group(claim.run_id)

    def on_delta(text: str) -> None:
        broadcaster.publish([(group, {"type": "run.delta", "step_id": step_id, "text": text})])

    return get_provider(provider_name).complete(request, on_delta)


def record_model_result(step_id: int, claim: Claim, response: ModelResponse) -> bool:
    payload = {
        "turn": None,
        "text": response.text,
        "tool_calls": [
            {"id": c.provider_call_id, "name": c.name, "arguments": c.arguments}
            for c in response.tool_calls
        ],
        "usage": {
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
        },
    }
    return _finish_model_step(step_id, claim, StepStatus.COMPLETED, payload, response)


def record_model_failure(step_id: int, claim: Claim, error: ProviderError) -> bool:
    payload = {"error": {"code": error.code, "message": error.message}}
    return _finish_model_step(step_id, claim, StepStatus.FAILED, payload, None)


def release_model_call(step_id: int, claim: Claim) -> None:
    """Give up the lease after a transient failure, so the retry can claim again."""
    AgentStep.objects.filter(id=step_id, attempt=claim.attempt, status=StepStatus.STARTED).update(
        lease_expires_at=None
    )


def _finish_model_step(
    step_id: int,
    claim: Claim,
    status: StepStatus,
    payload: dict[str, Any],
    response: ModelResponse | None,
) -> bool:
    now = timezone.now()
    with transaction.atomic():
        run = AgentRun.objects.select_for_update().get(id=claim.run_id)
        step = AgentStep.objects.filter(
            id=step_id, status=StepStatus.STARTED, attempt=claim.attempt
        ).first()
        if step is None:
            return False  # superseded or cancelled: this attempt's result is discarded
        payload["turn"] = step.payload.get("turn")
        step.status = status
        step.payload = payload
        step.finished_at = now
        step.lease_expires_at = None
        step.save(update_fields=["status", "payload", "finished_at", "lease_expires_at"])
        events = [NewEvent("step.updated", step_updated_payload(step))]
        if response is not None and (response.usage.input_tokens or response.usage.output_tokens):
            run.input_tokens += response.usage.input_tokens
            run.output_tokens += response.usage.output_tokens
            AgentRun.objects.filter(id=run.id).update(
                input_tokens=run.input_tokens, output_tokens=run.output_tokens
            )
            events.append(
                NewEvent(
                    "run.usage_updated",
                    {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens},
                )
            )
        append_events(run.id, events)
        transaction.on_commit(lambda: dispatch.enqueue_tick(run.id))
    return True


# Tool calls ---------------------------------------------------------------------------


def claim_tool_call(call_id: uuid.UUID) -> Claim | None:
    now = timezone.now()
    with transaction.atomic():
        run_id = ToolCall.objects.filter(id=call_id).values_list("run_id", flat=True).first()
        if run_id is None:
            return None
        AgentRun.objects.select_for_update().filter(id=run_id).values_list("id", flat=True).first()
        call = ToolCall.objects.select_related("tool").filter(id=call_id).first()
        if call is None or call.status != ToolCallStatus.QUEUED:
            return None  # already running elsewhere, finished or cancelled: fine
        timeout = timedelta(seconds=call.tool.timeout_seconds if call.tool else 30)
        call.status = ToolCallStatus.RUNNING
        call.attempt += 1
        call.started_at = call.started_at or now
        call.lease_expires_at = now + timeout + TOOL_LEASE_GRACE
        call.save(update_fields=["status", "attempt", "started_at", "lease_expires_at"])
        append_events(run_id, [NewEvent("tool_call.updated", tool_call_updated_payload(call))])
    return Claim(run_id=run_id, attempt=call.attempt)


def run_tool_call(call_id: uuid.UUID, claim: Claim) -> tuple[ToolCallStatus, Any, Any]:
    call = ToolCall.objects.select_related("tool").get(id=call_id)
    # Built-in tools run here, inside a transaction: there is no I/O to release the
    # connection across (executors that call out will release it around their request).
    outcome = execute_tool(call)
    if outcome.error is not None:
        return ToolCallStatus.FAILED, None, outcome.error
    return ToolCallStatus.SUCCEEDED, outcome.result, None


def record_tool_result(
    call_id: uuid.UUID, claim: Claim, status: ToolCallStatus, result: Any, error: Any
) -> bool:
    now = timezone.now()
    with transaction.atomic():
        AgentRun.objects.select_for_update().filter(id=claim.run_id).values_list(
            "id", flat=True
        ).first()
        call = ToolCall.objects.filter(
            id=call_id, status=ToolCallStatus.RUNNING, attempt=claim.attempt
        ).first()
        if call is None:
            return False  # superseded or cancelled: discard
        call.status = status
        call.result = result
        call.error = error
        call.finished_at = now
        call.lease_expires_at = None
        call.save(update_fields=["status", "result", "error", "finished_at", "lease_expires_at"])
        append_events(
            claim.run_id, [NewEvent("tool_call.updated", tool_call_updated_payload(call))]
        )
        transaction.on_commit(lambda: dispatch.enqueue_tick(claim.run_id))
    return True
