"""Activities: the slow parts of a run (model calls, tool calls), outside any transaction.

Each activity
1. is claimed with a conditional update — the row must still be open and unleased (or
   its lease expired); the claim bumps ``attempt``, the fencing token. (Under eager
   continuation the step that creates the row claims it for its worker: attempt 1.)
2. does its I/O with no transaction open and its database connection released;
3. hands its result to ``tick.advance``, which records it only if the row still carries
   that attempt — a superseded or cancelled attempt's result is discarded — and takes
   the run's next decision in the same commit.

Lock order everywhere: the run row first, then the step or tool call (a claim locks only
its own row, and ``advance`` retries if a claim moved a row under it).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from agentmaestro.agents.providers import get_provider
from agentmaestro.agents.providers.base import (
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ToolSpec,
)
from agentmaestro.runs.engine.plan import (
    MODEL_LEASE,
    TOOL_LEASE_GRACE,
    Activity,
    ActivityResult,
    ModelResult,
    Plan,
    ToolResult,
    requested_calls,
)
from agentmaestro.runs.engine.store import ModelContext, read_model_context
from agentmaestro.runs.engine.tick import advance
from agentmaestro.runs.events.broadcast import broadcaster, run_group
from agentmaestro.runs.events.store import append_events
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.services.payloads import tool_call_updated_payload
from agentmaestro.runs.states import StepKind, StepStatus, ToolCallStatus
from agentmaestro.tools.executors import execute_tool

logger = logging.getLogger(__name__)

__all__ = ["MODEL_LEASE", "TOOL_LEASE_GRACE"]


@dataclass(frozen=True)
class Claim:
    run_id: uuid.UUID
    attempt: int
    # Model calls: the step's index in its run.
    step_index: int = 0


# Model calls --------------------------------------------------------------------------

_CLAIM_MODEL = """
UPDATE runs_agentstep
   SET attempt = attempt + 1, lease_expires_at = %s
 WHERE id = %s AND status = 'STARTED' AND (lease_expires_at IS NULL OR lease_expires_at < %s)
RETURNING run_id, attempt, "index"
"""


def claim_model_call(step_id: int) -> Claim | None:
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_MODEL,
            [
                connection.ops.adapt_datetimefield_value(now + MODEL_LEASE),
                step_id,
                connection.ops.adapt_datetimefield_value(now),
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None  # done, cancelled, or another worker holds a live lease: fine
    run_id = row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(hex=row[0])
    return Claim(run_id=run_id, attempt=row[1], step_index=row[2])


def written_context(
    run_id: uuid.UUID, step_index: int, unwritten: Sequence[AgentStep] = ()
) -> ModelContext:
    """The conversation of the run's written steps before ``step_index`` (and before the
    first of the caller's ``unwritten`` ones, which build_model_request adds)."""
    first_unwritten = min((s.index for s in unwritten), default=step_index)
    return read_model_context(run_id, min(step_index, first_unwritten))


def _message(kind: str, status: str, payload: dict[str, Any]) -> Message | None:
    """A step's part of the conversation: a completed model turn, or an observation."""
    if kind == StepKind.MODEL_CALL and status == StepStatus.COMPLETED:
        return Message("assistant", payload.get("text") or "", tool_calls=requested_calls(payload))
    if kind == StepKind.OBSERVATION:
        content = payload.get("result", payload.get("error"))
        return Message(
            "tool",
            json.dumps(content),
            tool_call_id=payload.get("provider_call_id") or None,
            name=payload.get("tool_name"),
        )
    return None


def _history(context: ModelContext) -> list[Message]:
    """The messages of ``context.steps``. A context carried from step to step (eager
    continuation appends each step's new steps to it) converts only the steps added
    since its last request, so a turn's request costs O(new steps), not O(run)."""
    for kind, status, payload in context.steps[context.history_steps :]:
        if message := _message(kind, status, payload):
            context.history.append(message)
    context.history_steps = len(context.steps)
    return context.history


def build_model_request(
    run_id: uuid.UUID,
    step_index: int,
    unwritten: Sequence[AgentStep] = (),
    context: ModelContext | None = None,
) -> tuple[str, ModelRequest]:
    """The request for the MODEL_CALL step at ``step_index``: the conversation so far.

    ``unwritten``: steps of the caller's uncommitted plan; those before ``step_index``
    are part of the conversation but not in the database yet. ``context``: the
    conversation of every written step, if the caller has it already (not read again).
    """
    if context is None:
        context = written_context(run_id, step_index, unwritten)
    settings: dict[str, Any] = dict(context.model_settings or {})
    messages: list[Message] = []
    if context.system_prompt:
        messages.append(Message("system", context.system_prompt))
    prompt = context.input.get("prompt") if isinstance(context.input, dict) else None
    messages.append(
        Message("user", prompt if isinstance(prompt, str) else json.dumps(context.input))
    )
    messages += _history(context)
    for s in sorted(unwritten, key=lambda s: s.index):
        if s.index < step_index and (message := _message(s.kind, s.status, s.payload)):
            messages.append(message)
    turn = sum(1 for m in messages if m.role == "assistant")
    policy = context.tool_policy or {}
    tools = tuple(
        ToolSpec(t.name, t.description, t.args_schema)
        for t in context.tools
        if t.name in policy and policy[t.name].get("mode") != "deny"
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
    provider_name, request = build_model_request(claim.run_id, claim.step_index)
    connection.close()  # back to the pool: 1,000 calls in flight must not hold 1,000

    def on_delta(text: str) -> None:
        broadcaster.publish([delta_message(claim.run_id, step_id, claim.step_index, text)])

    return get_provider(provider_name).complete(request, on_delta)


def delta_message(
    run_id: uuid.UUID, step_id: int | None, step_index: int, text: str
) -> tuple[str, dict[str, Any]]:
    """A model turn's text delta, for the run's watchers (ephemeral: never stored)."""
    message = {"type": "run.delta", "step_id": step_id, "step_index": step_index, "text": text}
    return run_group(run_id), message


# Transient failures (429, 5xx, timeouts) are retried this many times, after
# retry_delay() seconds each: the provider's Retry-After, else 0.5 s, 1 s, 2 s … 30 s.
MODEL_MAX_RETRIES = 5


def retry_delay(error: ProviderError, retries: int) -> float | None:
    """Seconds to wait before retry number ``retries + 1``, or None: fail the step."""
    if not error.transient or retries >= MODEL_MAX_RETRIES:
        return None
    return error.retry_after or min(30.0, 0.5 * 2**retries)


def answer_inline(activity: Activity, plan: Plan) -> ModelResult:
    """Answer a model call claimed for inline execution, inside the caller's step.

    Only for providers that do no I/O (``providers.runs_inline``): the call runs while
    the step holds the run's lock. Its deltas go out after the step commits, so no
    watcher sees text from a step that might yet roll back. The conversation is read
    once per drive and kept on the plan (``Plan.context``) for the steps that follow.
    """
    index = activity.model_index
    claim = Claim(activity.run_id, activity.attempt, index)
    unwritten = plan.changes.new_steps
    if plan.context is None:
        plan.context = written_context(activity.run_id, index, unwritten)
    provider_name, request = build_model_request(activity.run_id, index, unwritten, plan.context)
    deltas: list[str] = []
    try:
        response = get_provider(provider_name).complete(request, deltas.append)
    except ProviderError as failure:
        return model_failure(0, claim, failure)
    if deltas:
        plan.deltas.append((next(s for s in unwritten if s.index == index), deltas))
    return model_result(0, claim, response)


def model_result(step_id: int, claim: Claim, response: ModelResponse) -> ModelResult:
    return ModelResult(
        step_index=claim.step_index,
        attempt=claim.attempt,
        text=response.text,
        tool_calls=response.tool_calls,
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
    )


def model_failure(step_id: int, claim: Claim, error: ProviderError) -> ModelResult:
    return ModelResult(
        step_index=claim.step_index,
        attempt=claim.attempt,
        error={"code": error.code, "message": error.message},
    )


def record_model_result(step_id: int, claim: Claim, response: ModelResponse) -> bool:
    """Record the response and enqueue a tick; False if it was stale (discarded)."""
    return _recorded(claim, model_result(step_id, claim, response))


def release_model_call(step_id: int, claim: Claim) -> None:
    """Give up the lease after a transient failure, so the retry can claim again."""
    AgentStep.objects.filter(id=step_id, attempt=claim.attempt, status=StepStatus.STARTED).update(
        lease_expires_at=None
    )


def _recorded(claim: Claim, outcome: ActivityResult) -> bool:
    """Record only; a tick after commit takes the decision (the tasks fuse the two)."""
    result = advance(claim.run_id, (outcome,), decide_next=False)
    return bool(result and result.accepted[0])


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


def tool_result(
    call_id: uuid.UUID, claim: Claim, status: ToolCallStatus, result: Any, error: Any
) -> ToolResult:
    if status is ToolCallStatus.FAILED:
        return ToolResult(call_id, claim.attempt, error=error)
    return ToolResult(call_id, claim.attempt, result=result)


def record_tool_result(
    call_id: uuid.UUID, claim: Claim, status: ToolCallStatus, result: Any, error: Any
) -> bool:
    """Record the outcome and enqueue a tick; False if it was stale (discarded)."""
    return _recorded(claim, tool_result(call_id, claim, status, result, error))
