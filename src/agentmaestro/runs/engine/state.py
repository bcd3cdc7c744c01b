"""Read a run's persisted state into the plain data ``decide()`` takes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agentmaestro.runs.engine.decide import (
    Budgets,
    RequestedToolCall,
    RunState,
    StepView,
    ToolCallView,
)
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus, ToolCallStatus


def requested_calls(payload: dict[str, Any]) -> tuple[RequestedToolCall, ...]:
    return tuple(
        RequestedToolCall(call["id"], call["name"], call.get("arguments"))
        for call in payload.get("tool_calls") or []
    )


def load_state(run: AgentRun, now: datetime) -> RunState:
    """The state of ``run`` (whose row the caller has locked)."""
    agent = run.agent
    model_step = (
        AgentStep.objects.filter(run_id=run.id, kind=StepKind.MODEL_CALL).order_by("-index").first()
    )
    last_model: StepView | None = None
    calls: tuple[ToolCallView, ...] = ()
    observed = False
    if model_step is not None:
        last_model = StepView(
            index=model_step.index,
            kind=StepKind(model_step.kind),
            status=StepStatus(model_step.status),
            text=model_step.payload.get("text"),
            tool_calls=requested_calls(model_step.payload),
            error=model_step.payload.get("error"),
        )
        calls = tuple(
            ToolCallView(str(c.id), c.tool_name, ToolCallStatus(c.status), c.result, c.error)
            for c in ToolCall.objects.filter(
                run_id=run.id, step__index__gt=model_step.index
            ).order_by("created_at", "position")
        )
        observed = AgentStep.objects.filter(
            run_id=run.id, kind=StepKind.OBSERVATION, index__gt=model_step.index
        ).exists()
    return RunState(
        status=RunStatus(run.status),
        now=now,
        budgets=Budgets(
            max_steps=agent.max_steps,
            max_tool_calls=agent.max_tool_calls,
            max_tokens=agent.max_tokens,
            deadline=run.created_at + timedelta(seconds=agent.max_wall_seconds),
        ),
        step_count=run.step_count,
        tool_call_count=run.tool_call_count,
        tokens_used=run.input_tokens + run.output_tokens,
        last_model_step=last_model,
        turn_tool_calls=calls,
        observations_recorded=observed,
    )
