"""A step's plan: the loaded rows, the results it records and the commands it applies,
turned into the rows and events one write stores. Pure: no I/O (tick.py does that).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from agentmaestro.agents.providers import runs_inline
from agentmaestro.runs.engine.decide import (
    Budgets,
    Command,
    CreateToolCalls,
    RecordMessage,
    RecordObservations,
    RequestedToolCall,
    RunState,
    StartModelCall,
    StepView,
    ToolCallView,
    Transition,
)
from agentmaestro.runs.engine.store import Changes, Loaded, ModelContext
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentStep, ToolCall
from agentmaestro.runs.services.payloads import (
    step_created_payload,
    step_updated_payload,
    tool_call_created_payload,
    tool_call_updated_payload,
)
from agentmaestro.runs.services.transitions import plan_transition
from agentmaestro.runs.states import (
    TOOL_CALL_FINAL,
    RunStatus,
    StepKind,
    StepStatus,
    ToolCallStatus,
)
from agentmaestro.tools.builtins import run_builtin
from agentmaestro.tools.models import ExecutorKind, ToolDefinition

# A claimed model call may run this long before the reconciler may hand it to another
# worker. Above the provider timeout, so a live attempt is never pre-empted.
MODEL_LEASE = timedelta(seconds=120)
# An inline model call (eager continuation) takes microseconds; if its worker dies, the
# reconciler should not wait two minutes to hand it on.
INLINE_MODEL_LEASE = timedelta(seconds=15)
TOOL_LEASE_GRACE = timedelta(seconds=30)


# --- what goes in and out ----------------------------------------------------------------


@dataclass(frozen=True)
class ModelResult:
    """A model call's outcome: a response, or a final error."""

    # The MODEL_CALL step's index in its run (its row may not be written yet: an inline
    # model call is answered in the step that starts it).
    step_index: int
    attempt: int
    text: str = ""
    tool_calls: tuple[RequestedToolCall, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    error: dict[str, str] | None = None


@dataclass(frozen=True)
class ToolResult:
    call_id: uuid.UUID
    attempt: int
    result: Any = None
    error: dict[str, str] | None = None


ActivityResult = ModelResult | ToolResult


@dataclass(frozen=True)
class Activity:
    """An inline model call a step started and claimed for itself (attempt 1)."""

    run_id: uuid.UUID
    model_index: int
    attempt: int


@dataclass
class TickResult:
    commands: list[Command]
    status: RunStatus
    # Started and left to the broker (enqueued after commit).
    model_steps: list[int] = field(default_factory=list)
    tool_calls: list[uuid.UUID] = field(default_factory=list)
    # Eager continuation stopped this step before the run's next model turn: the caller
    # takes the next step at once (tick.drive), or enqueues it.
    more: bool = False
    # With ``more``: the state this step left, for the next one to start from.
    continuation: Continuation | None = None
    # One flag per result passed in: recorded (True) or discarded as stale (False).
    accepted: list[bool] = field(default_factory=list)


@dataclass
class Continuation:
    """What a worker knows of a run right after its own step committed: the next step
    may start from this instead of reading the run again (tick.advance)."""

    loaded: Loaded
    # The conversation so far, once an inline model call has read it.
    context: ModelContext | None


# --- the plan: loaded rows + results + commands -> changes (pure, no I/O) -----------------


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Validator:
    schema = json.loads(schema_json)
    validator: Validator = validator_for(schema)(schema)
    return validator


def requested_calls(payload: dict[str, Any]) -> tuple[RequestedToolCall, ...]:
    return tuple(
        RequestedToolCall(call["id"], call["name"], call.get("arguments"))
        for call in payload.get("tool_calls") or []
    )


class Plan:
    def __init__(
        self,
        loaded: Loaded,
        now: datetime,
        *,
        eager: bool,
        context: ModelContext | None = None,
    ) -> None:
        self.loaded = loaded
        self.run = loaded.run
        self.now = now
        self.eager = eager
        # The newest model step and its turn: a step that starts a model call starts a
        # new turn, with no calls and no observations yet.
        self.model = loaded.model
        self.calls = list(loaded.calls)
        self.observed = loaded.observed
        self.changes = Changes(run=self.run, expect_seq=self.run.last_seq)
        self.result = TickResult(commands=[], status=RunStatus(self.run.status))
        # The step.created payloads of the steps this plan creates, by index: a step
        # finished within the same plan is announced finished, in that one event.
        self._created: dict[int, dict[str, Any]] = {}
        # Model turns answered inside this step; one per step (see apply()).
        self.answered = 0
        # The inline model call this step started and has yet to answer (tick.py).
        self._inline: Activity | None = None
        # The conversation before this step's new steps, for an inline model call: read
        # by its first call in a drive (activities.answer_inline), then carried along.
        self.context = context
        # Text deltas of inline model turns, by step: broadcast after commit (tick.py).
        self.deltas: list[tuple[AgentStep, list[str]]] = []

    # Results ------------------------------------------------------------------------

    def record(self, outcome: ActivityResult) -> bool:
        if isinstance(outcome, ModelResult):
            return self._record_model(outcome)
        return self._record_tool(outcome)

    def _record_model(self, outcome: ModelResult) -> bool:
        step = self.model
        if (
            step is None
            or step.index != outcome.step_index
            or step.status != StepStatus.STARTED
            or step.attempt != outcome.attempt
        ):
            return False  # superseded, cancelled or already recorded: discard
        if outcome.error is not None:
            step.status = StepStatus.FAILED
            step.payload = {"error": outcome.error}
        else:
            step.status = StepStatus.COMPLETED
            step.payload = {
                "turn": step.payload.get("turn"),
                "text": outcome.text,
                "tool_calls": [
                    {"id": c.provider_call_id, "name": c.name, "arguments": c.arguments}
                    for c in outcome.tool_calls
                ],
                "usage": {
                    "input_tokens": outcome.input_tokens,
                    "output_tokens": outcome.output_tokens,
                },
            }
        step.finished_at = self.now
        step.lease_expires_at = None
        created = self._created.get(step.index)
        if created is not None:
            # Started by this same step: its row is inserted finished, and the one event
            # announcing it says so.
            self.answered += 1
            created.update(step_created_payload(step))
        else:
            self.changes.finished_steps.append((step, outcome.attempt))
            self.changes.events.append(NewEvent("step.updated", step_updated_payload(step)))
        # The turn's usage is in its step's payload, which its event carries; the run's
        # totals are their sum (runs/replay.py), so no event of their own.
        self.run.input_tokens += outcome.input_tokens
        self.run.output_tokens += outcome.output_tokens
        return True

    def _record_tool(self, outcome: ToolResult) -> bool:
        call = next((c for c in self.calls if c.id == outcome.call_id), None)
        if call is None or call.status != ToolCallStatus.RUNNING or call.attempt != outcome.attempt:
            return False  # superseded or cancelled: discard
        call.status = ToolCallStatus.FAILED if outcome.error else ToolCallStatus.SUCCEEDED
        call.result = None if outcome.error else outcome.result
        call.error = outcome.error
        call.finished_at = self.now
        call.lease_expires_at = None
        self.changes.changed_calls.append((call, ToolCallStatus.RUNNING, outcome.attempt))
        self.changes.events.append(NewEvent("tool_call.updated", tool_call_updated_payload(call)))
        return True

    def continuation(self, last_seq: int) -> Continuation:
        """The run as this plan left it, once its changes are written (at ``last_seq``)."""
        self.run.last_seq = last_seq
        self.run.tick_failures = 0
        context = self.context
        if context is not None:
            context.steps += [
                (s.kind, s.status, s.payload)
                for s in self.changes.new_steps
                if s.kind in (StepKind.MODEL_CALL, StepKind.OBSERVATION)
            ]
        loaded = Loaded(
            run=self.run,
            agent=self.loaded.agent,
            model=self.model,
            calls=self.calls,
            observed=self.observed,
            tools=self.loaded.tools,
        )
        return Continuation(loaded, context)

    def take_inline_model(self) -> Activity | None:
        """The model call this step started and claimed to answer inline, if any."""
        inline, self._inline = self._inline, None
        return inline

    # The state decide() sees ----------------------------------------------------------

    def state(self) -> RunState:
        run, agent, model = self.run, self.loaded.agent, self.model
        view = None
        if model is not None:
            view = StepView(
                index=model.index,
                kind=StepKind.MODEL_CALL,
                status=StepStatus(model.status),
                text=model.payload.get("text"),
                tool_calls=requested_calls(model.payload),
                error=model.payload.get("error"),
            )
        return RunState(
            status=RunStatus(run.status),
            now=self.now,
            budgets=Budgets(
                max_steps=agent.max_steps,
                max_tool_calls=agent.max_tool_calls,
                max_tokens=agent.max_tokens,
                deadline=run.created_at + timedelta(seconds=agent.max_wall_seconds),
            ),
            step_count=run.step_count,
            tool_call_count=run.tool_call_count,
            tokens_used=run.input_tokens + run.output_tokens,
            last_model_step=view,
            turn_tool_calls=tuple(
                ToolCallView(str(c.id), c.tool_name, ToolCallStatus(c.status), c.result, c.error)
                for c in self.calls
            ),
            observations_recorded=self.observed,
        )

    # Commands -------------------------------------------------------------------------

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
                    self._close_open_work()
                for name, value in plan.fields.items():
                    setattr(self.run, name, value)
                self.changes.events.append(NewEvent("run.status_changed", plan.event_payload))
                self.result.status = to
            case StartModelCall():
                if self.eager and self.answered and self._inline_model():
                    # One model turn per step: commit this one before answering the next,
                    # so each turn is durable (and announced) as it happens.
                    self.result.more = True
                    return
                self._start_model_call()
            case CreateToolCalls(calls=calls):
                # The step's calls are its ToolCall rows (and their events); the model's
                # request is in its MODEL_CALL step. Nothing to repeat here.
                step = self._new_step(StepKind.TOOL_CALL, {})
                for position, requested in enumerate(calls):
                    self._create_tool_call(step, position, requested)
            case RecordObservations(calls=calls):
                by_id = {str(c.id): c for c in self.calls}
                for view in calls:
                    payload: dict[str, Any] = {
                        "tool_call_id": view.id,
                        "provider_call_id": by_id[view.id].provider_call_id,
                        "tool_name": view.tool_name,
                        "status": view.status.value,
                    }
                    if view.error is not None:
                        payload["error"] = view.error
                    else:
                        payload["result"] = view.result
                    self._new_step(StepKind.OBSERVATION, payload)
                self.observed = True
            case RecordMessage(text=text):
                self._new_step(StepKind.MESSAGE, {"text": text})

    def _new_step(
        self, kind: StepKind, payload: dict[str, Any], status: StepStatus = StepStatus.COMPLETED
    ) -> AgentStep:
        self.run.step_count += 1
        step = AgentStep(
            run_id=self.run.id,
            index=self.run.step_count,
            kind=kind,
            status=status,
            payload=payload,
            created_at=self.now,
            finished_at=None if status is StepStatus.STARTED else self.now,
        )
        self.changes.new_steps.append(step)
        # One event: a step created finished carries its finished_at (no step.updated).
        created = step_created_payload(step)
        self._created[step.index] = created
        self.changes.events.append(NewEvent("step.created", created))
        return step

    def _inline_model(self) -> bool:
        return runs_inline(self.loaded.agent.model_settings or {})

    def _start_model_call(self) -> None:
        previous = self.model
        turn = 0 if previous is None else int(previous.payload.get("turn") or 0) + 1
        step = self._new_step(StepKind.MODEL_CALL, {"turn": turn}, StepStatus.STARTED)
        if self.eager and self._inline_model():
            # Claimed for this worker as it is created: the same fencing as a claim.
            step.attempt = 1
            step.lease_expires_at = self.now + INLINE_MODEL_LEASE
            self._inline = Activity(self.run.id, model_index=step.index, attempt=1)
        else:
            self.result.model_steps.append(step.index)  # an index until written: see advance()
        self.model = step
        self.calls = []
        self.observed = False

    def _create_tool_call(
        self, step: AgentStep, position: int, requested: RequestedToolCall
    ) -> None:
        status, error, tool = self._vet(requested.name, requested.arguments)
        call_id = uuid.uuid4()
        call = ToolCall(
            id=call_id,
            run_id=self.run.id,
            tool_id=tool.id if tool else None,
            tool_name=requested.name,
            provider_call_id=requested.provider_call_id,
            position=position,
            arguments=requested.arguments,
            status=status,
            error=error,
            finished_at=self.now if error else None,
            created_at=self.now,
        )
        builtin = tool is not None and tool.executor == ExecutorKind.BUILTIN
        if self.eager and builtin and status is ToolCallStatus.QUEUED:
            # A built-in tool is a bounded computation with no I/O and no side effects:
            # under eager continuation it runs right here, inside the step, and the call
            # is created finished (docs/engine.md, "Built-in tools").
            call.result, call.error = run_builtin(call.tool_name, call.arguments)
            call.status = ToolCallStatus.FAILED if call.error else ToolCallStatus.SUCCEEDED
            call.attempt = 1
            call.started_at = call.finished_at = self.now
        self.run.tool_call_count += 1
        self.changes.new_calls.append((call, step.index))
        self.calls.append(call)
        # One event; a call created finished (refused, or run inside this step) carries
        # its outcome.
        self.changes.events.append(
            NewEvent("tool_call.created", tool_call_created_payload(call, step.index))
        )
        if call.status == ToolCallStatus.QUEUED:
            self.result.tool_calls.append(call.id)

    def _vet(
        self, name: str, arguments: Any
    ) -> tuple[ToolCallStatus, dict[str, str] | None, ToolDefinition | None]:
        """Unknown, denied or badly-argued calls fail here, before anything runs."""
        policy = (self.loaded.agent.tool_policy or {}).get(name) or {}
        mode = policy.get("mode", "allow") if policy else None
        tool = self.loaded.tools.get(name)
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
        validator = _validator(json.dumps(tool.args_schema))
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

    def _close_open_work(self) -> None:
        """A run that ends cancels its open tool calls and model call (same as run_cancel).

        The loaded rows are all the open work there is: earlier turns finished before the
        run moved on, and results recorded in this step are already final.
        """
        for call in self.calls:
            if call.status in TOOL_CALL_FINAL:
                continue
            fence = (call.status, call.attempt)
            pending = next((c for c, _ in self.changes.new_calls if c is call), None)
            call.status = ToolCallStatus.CANCELLED
            call.finished_at = self.now
            call.lease_expires_at = None
            if pending is None:
                self.changes.changed_calls.append((call, fence[0], fence[1]))
            self.changes.events.append(
                NewEvent("tool_call.updated", tool_call_updated_payload(call))
            )
        model = self.model
        if model is not None and model.status == StepStatus.STARTED:
            model.status = StepStatus.CANCELLED
            model.finished_at = self.now
            model.lease_expires_at = None
            if model.id is not None:
                self.changes.finished_steps.append((model, None))
            self.changes.events.append(
                NewEvent("step.updated", step_updated_payload(model, with_payload=False))
            )
