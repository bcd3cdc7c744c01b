"""One tick: lock the run, read its state, ``decide()``, apply the commands, commit.

A tick does no network I/O. Activities it starts are enqueued only after its commit;
an activity's result, committed later, enqueues the next tick. Because every writer of
a run's state also appends events, and appending takes the run row's lock, a result
that lands while a tick holds the lock simply waits for it and then enqueues a fresh
tick: no wake-up is lost (docs/engine.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from jsonschema.validators import validator_for

from agentmaestro.runs.engine.decide import (
    Command,
    CreateToolCalls,
    RecordMessage,
    RecordObservations,
    StartModelCall,
    Transition,
    decide,
)
from agentmaestro.runs.engine.state import load_state
from agentmaestro.runs.events.store import append_events
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.services.payloads import (
    step_created_payload,
    step_updated_payload,
    tool_call_created_payload,
)
from agentmaestro.runs.services.runs import close_open_work
from agentmaestro.runs.services.transitions import plan_transition
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus, ToolCallStatus
from agentmaestro.tools.models import ToolDefinition


@dataclass
class TickResult:
    commands: list[Command]
    status: RunStatus
    model_steps: list[int] = field(default_factory=list)
    tool_calls: list[uuid.UUID] = field(default_factory=list)


class _Applier:
    """Applies one tick's commands to the locked run, collecting its events."""

    def __init__(self, run: AgentRun, now: datetime) -> None:
        self.run = run
        self.now = now
        self.events: list[NewEvent] = []
        self.result = TickResult(commands=[], status=RunStatus(run.status))
        self.run_fields: dict[str, Any] = {}

    def _new_step(
        self, kind: StepKind, payload: dict[str, Any], status: StepStatus = StepStatus.COMPLETED
    ) -> AgentStep:
        self.run.step_count += 1
        self.run_fields["step_count"] = self.run.step_count
        step = AgentStep.objects.create(
            run_id=self.run.id,
            index=self.run.step_count,
            kind=kind,
            status=status,
            payload=payload,
            created_at=self.now,
            finished_at=None if status is StepStatus.STARTED else self.now,
        )
        self.events.append(NewEvent("step.created", step_created_payload(step)))
        if status is not StepStatus.STARTED:
            self.events.append(
                NewEvent("step.updated", step_updated_payload(step, with_payload=False))
            )
        return step

    def apply(self, command: Command) -> None:
        match command:
            case Transition(to=to, reason=reason, output=output, error=error):
                plan = plan_transition(
                    from_status=RunStatus(self.run.status),
                    to_status=to,
                    started_at=self.run.started_at,
                    at=self.now,
                    reason=reason,
                    output=output,
                    error=error,
                )
                if to.is_terminal:
                    # A run failed by a budget may still have calls queued or in flight.
                    self.events.extend(close_open_work(self.run.id, self.now))
                for name, value in plan.fields.items():
                    setattr(self.run, name, value)
                self.run_fields.update(plan.fields)
                self.events.append(NewEvent("run.status_changed", plan.event_payload))
                self.result.status = to
            case StartModelCall():
                turn = AgentStep.objects.filter(
                    run_id=self.run.id, kind=StepKind.MODEL_CALL
                ).count()
                step = self._new_step(StepKind.MODEL_CALL, {"turn": turn}, StepStatus.STARTED)
                self.result.model_steps.append(step.id)
            case CreateToolCalls(calls=calls):
                step = self._new_step(
                    StepKind.TOOL_CALL,
                    {"calls": [{"id": c.provider_call_id, "name": c.name} for c in calls]},
                )
                for position, requested in enumerate(calls):
                    self._create_tool_call(
                        step,
                        position,
                        requested.provider_call_id,
                        requested.name,
                        requested.arguments,
                    )
            case RecordObservations(calls=calls):
                provider_ids = dict(
                    ToolCall.objects.filter(id__in=[c.id for c in calls]).values_list(
                        "id", "provider_call_id"
                    )
                )
                for call in calls:
                    payload: dict[str, Any] = {
                        "tool_call_id": call.id,
                        "provider_call_id": provider_ids.get(uuid.UUID(call.id), ""),
                        "tool_name": call.tool_name,
                        "status": call.status.value,
                    }
                    if call.error is not None:
                        payload["error"] = call.error
                    else:
                        payload["result"] = call.result
                    self._new_step(StepKind.OBSERVATION, payload)
            case RecordMessage(text=text):
                self._new_step(StepKind.MESSAGE, {"text": text})

    def _create_tool_call(
        self, step: AgentStep, position: int, provider_call_id: str, name: str, arguments: Any
    ) -> None:
        status, error, tool = self._vet(name, arguments)
        call_id = uuid.uuid4()
        call = ToolCall.objects.create(
            id=call_id,
            run_id=self.run.id,
            step=step,
            tool=tool,
            tool_name=name,
            provider_call_id=provider_call_id,
            position=position,
            arguments=arguments,
            status=status,
            error=error,
            finished_at=self.now if error else None,
            idempotency_key=f"{self.run.id}:{call_id}",
            created_at=self.now,
        )
        self.run.tool_call_count += 1
        self.run_fields["tool_call_count"] = self.run.tool_call_count
        created = tool_call_created_payload(call, step.index)
        if error is not None:
            # Refused before running: recorded as created, then failed, so the model sees why.
            created["status"] = ToolCallStatus.QUEUED.value
            self.events.append(NewEvent("tool_call.created", created))
            self.events.append(
                NewEvent(
                    "tool_call.updated",
                    {
                        "id": str(call.id),
                        "status": status.value,
                        "attempt": 0,
                        "result": None,
                        "error": error,
                        "started_at": None,
                        "finished_at": self.now.isoformat(),
                    },
                )
            )
        else:
            self.events.append(NewEvent("tool_call.created", created))
            if status is ToolCallStatus.QUEUED:
                self.result.tool_calls.append(call.id)

    def _vet(
        self, name: str, arguments: Any
    ) -> tuple[ToolCallStatus, dict[str, str] | None, ToolDefinition | None]:
        """Unknown, denied or badly-argued calls fail here, before anything runs."""
        policy = (self.run.agent.tool_policy or {}).get(name) or {}
        mode = policy.get("mode", "allow") if policy else None
        tool = ToolDefinition.objects.filter(workspace_id=self.run.workspace_id, name=name).first()
        if tool is None or mode is None:
            return (
                ToolCallStatus.FAILED,
                {"code": "unknown_tool", "message": f"No tool named {name!r} is available."},
                tool,
            )
        if mode == "deny":
            return (
                ToolCallStatus.FAILED,
                {"code": "tool_denied", "message": f"The agent may not call {name!r}."},
                tool,
            )
        validator = validator_for(tool.args_schema)(tool.args_schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(arguments)"
            return (
                ToolCallStatus.FAILED,
                {"code": "invalid_arguments", "message": f"{where}: {errors[0].message}"},
                tool,
            )
        if mode == "approve":
            return ToolCallStatus.WAITING_FOR_APPROVAL, None, tool
        return ToolCallStatus.QUEUED, None, tool


def tick(run_id: uuid.UUID) -> TickResult | None:
    """Advance the run by one decision. Returns None if there is no such run.

    Idempotent: a tick that finds nothing to do writes nothing, so a duplicate
    delivery is harmless.
    """
    with transaction.atomic():
        # of=("self",): lock the run's row only. Without it PostgreSQL also locks the
        # joined agent row, and every run of one agent would tick one at a time.
        run = (
            AgentRun.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(id=run_id)
            .first()
        )
        if run is None:
            return None
        now = timezone.now()
        commands = decide(load_state(run, now))
        applier = _Applier(run, now)
        applier.result.commands = commands
        for command in commands:
            applier.apply(command)
        if applier.run_fields:
            AgentRun.objects.filter(id=run.id).update(**applier.run_fields)
        if applier.events:
            append_events(run.id, applier.events)
        result = applier.result
        from agentmaestro.runs import dispatch

        if result.model_steps or result.tool_calls:
            transaction.on_commit(
                lambda: dispatch.start_activities(result.model_steps, result.tool_calls)
            )
        elif commands and not result.status.is_terminal:
            # The run moved but started nothing that will report back (every tool call
            # of the turn was refused, say): no result will wake it, so wake it here,
            # or it would sit idle until the reconciler's grace period ran out.
            transaction.on_commit(lambda: dispatch.enqueue_tick(run_id))
    return result
