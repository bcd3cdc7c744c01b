"""The ORM form of the step store: SQLite (standalone), and any other database.

The same behaviour as the hand-written PostgreSQL statements in several ORM statements:
on SQLite a step's writes run one at a time anyway (in-process, so cheap).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from agentmaestro.runs.engine.store.rows import Changes, Loaded, ModelContext, Stale, Written
from agentmaestro.runs.events.store import append_events
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.states import StepKind, StepStatus
from agentmaestro.tools.models import ToolDefinition


def read_locked(run_id: uuid.UUID) -> Loaded | None:
    # of=("self",): lock the run's row only, not its agent's (runs of one agent would
    # otherwise tick one at a time). SQLite ignores it: its write transactions serialize.
    run = (
        AgentRun.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(id=run_id)
        .first()
    )
    if run is None:
        return None
    model = (
        AgentStep.objects.filter(run_id=run_id, kind=StepKind.MODEL_CALL).order_by("-index").first()
    )
    calls: list[ToolCall] = []
    observed = False
    tools: dict[str, ToolDefinition] = {}
    if model is not None:
        calls = list(
            ToolCall.objects.filter(run_id=run_id, step__index__gt=model.index).order_by(
                "created_at", "position"
            )
        )
        observed = AgentStep.objects.filter(
            run_id=run_id, kind=StepKind.OBSERVATION, index__gt=model.index
        ).exists()

    names = list(run.agent.tool_policy or {})
    if names:
        tools = {
            t.name: t
            for t in ToolDefinition.objects.filter(workspace_id=run.workspace_id, name__in=names)
        }
    return Loaded(
        run=run, agent=run.agent, model=model, calls=calls, observed=observed, tools=tools
    )


def write_changes(changes: Changes, now: datetime) -> Written:
    run = changes.run
    moved = AgentRun.objects.filter(id=run.id, last_seq=changes.expect_seq).update(
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        output=run.output,
        error=run.error,
        step_count=run.step_count,
        tool_call_count=run.tool_call_count,
        input_tokens=run.input_tokens,
        output_tokens=run.output_tokens,
        tick_failures=0,
    )
    if not moved:
        raise Stale(f"run {run.id} moved on since it was read (or is gone)")
    finished = 0
    for step, fence in changes.finished_steps:
        fenced = AgentStep.objects.filter(
            run_id=run.id, index=step.index, status=StepStatus.STARTED
        )
        if fence is not None:
            fenced = fenced.filter(attempt=fence)
        finished += fenced.update(
            status=step.status,
            payload=step.payload,
            finished_at=step.finished_at,
            lease_expires_at=None,
        )
    created = AgentStep.objects.bulk_create(
        [
            AgentStep(
                run_id=run.id,
                index=s.index,
                kind=s.kind,
                status=s.status,
                payload=s.payload,
                created_at=s.created_at,
                finished_at=s.finished_at,
                attempt=s.attempt,
                lease_expires_at=s.lease_expires_at,
            )
            for s in changes.new_steps
        ]
    )
    step_ids = {s.index: s.id for s in created}
    changed = 0
    for call, fence_status, fence_attempt in changes.changed_calls:
        changed += ToolCall.objects.filter(
            id=call.id, run_id=run.id, status=fence_status, attempt=fence_attempt
        ).update(
            status=call.status,
            attempt=call.attempt,
            result=call.result,
            error=call.error,
            started_at=call.started_at,
            finished_at=call.finished_at,
            lease_expires_at=call.lease_expires_at,
        )
    for call, step_index in changes.new_calls:
        call.step_id = step_ids[step_index]
    ToolCall.objects.bulk_create([call for call, _ in changes.new_calls])
    stored = append_events(run.id, changes.events, broadcast=False, now=now)
    return Written(
        last_seq=stored[-1].seq if stored else changes.expect_seq,
        events=stored,
        workspace_id=run.workspace_id,
        status=run.status,
        step_ids=step_ids,
        finished_steps=finished,
        changed_calls=changed,
    )


def read_model_context(run_id: uuid.UUID, before_index: int) -> ModelContext:
    run = AgentRun.objects.select_related("agent").get(id=run_id)
    agent = run.agent
    policy = agent.tool_policy or {}
    return ModelContext(
        system_prompt=agent.system_prompt,
        input=run.input,
        model_settings=agent.model_settings,
        tool_policy=policy,
        steps=list(
            AgentStep.objects.filter(
                run_id=run_id,
                kind__in=[StepKind.MODEL_CALL, StepKind.OBSERVATION],
                index__lt=before_index,
            )
            .order_by("index")
            .values_list("kind", "status", "payload")
        ),
        tools=list(
            ToolDefinition.objects.filter(
                workspace_id=run.workspace_id, name__in=list(policy)
            ).order_by("name")
        ),
    )
