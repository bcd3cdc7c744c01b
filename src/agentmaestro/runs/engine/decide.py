"""What a run should do next, as a pure function of its persisted state.

``decide(state)`` takes plain data and returns plain commands; it does no I/O. The
tick (tick.py) loads the state under the run's lock, calls this, and applies the
commands in the same transaction. Every branch is one situation; the last line
raises, because a state no branch covers is a bug, not something to guess about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentmaestro.runs.states import (
    TOOL_CALL_FINAL,
    RunStatus,
    StepKind,
    StepStatus,
    ToolCallStatus,
)


@dataclass(frozen=True)
class ToolCallView:
    id: str
    tool_name: str
    status: ToolCallStatus
    result: Any = None
    error: dict[str, str] | None = None

    @property
    def finished(self) -> bool:
        return self.status in TOOL_CALL_FINAL


@dataclass(frozen=True)
class RequestedToolCall:
    """A tool call as the model asked for it."""

    provider_call_id: str
    name: str
    arguments: Any


@dataclass(frozen=True)
class StepView:
    index: int
    kind: StepKind
    status: StepStatus
    # MODEL_CALL, completed: the model's text and the tool calls it asked for.
    text: str | None = None
    tool_calls: tuple[RequestedToolCall, ...] = ()
    error: dict[str, str] | None = None


@dataclass(frozen=True)
class Budgets:
    max_steps: int
    max_tool_calls: int
    max_tokens: int
    deadline: datetime


@dataclass(frozen=True)
class RunState:
    status: RunStatus
    now: datetime
    budgets: Budgets
    step_count: int
    tool_call_count: int
    tokens_used: int
    # The newest MODEL_CALL step, if any, and the tool calls it produced.
    last_model_step: StepView | None
    turn_tool_calls: tuple[ToolCallView, ...] = field(default_factory=tuple)
    # True when the turn's tool results are already recorded as OBSERVATION steps.
    observations_recorded: bool = False


# Commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    to: RunStatus
    reason: str | None = None
    output: Any = None
    error: dict[str, str] | None = None


@dataclass(frozen=True)
class StartModelCall:
    """Append a MODEL_CALL step and enqueue the activity that performs it."""


@dataclass(frozen=True)
class CreateToolCalls:
    """Turn the model's requested calls into a TOOL_CALL step and queued ToolCall rows."""

    calls: tuple[RequestedToolCall, ...]


@dataclass(frozen=True)
class RecordObservations:
    """Append one OBSERVATION step per finished tool call of the turn."""

    calls: tuple[ToolCallView, ...]


@dataclass(frozen=True)
class RecordMessage:
    """Append the final MESSAGE step."""

    text: str


Command = Transition | StartModelCall | CreateToolCalls | RecordObservations | RecordMessage


class ImpossibleState(Exception):
    pass


def _fail(code: str, message: str) -> list[Command]:
    return [Transition(RunStatus.FAILED, reason=code, error={"code": code, "message": message})]


def over_budget(state: RunState, *, next_steps: int = 0, next_calls: int = 0) -> list[Command]:
    """The Fail command for the first budget that is (or would be) exceeded, or []."""
    budgets = state.budgets
    if state.now >= budgets.deadline:
        return _fail("budget_wall_time", "The run exceeded its wall-clock deadline.")
    if state.tokens_used > budgets.max_tokens:
        return _fail(
            "budget_tokens", f"The run used {state.tokens_used} tokens (max {budgets.max_tokens})."
        )
    if state.step_count + next_steps > budgets.max_steps:
        return _fail("budget_steps", f"The run would exceed its {budgets.max_steps} steps.")
    if state.tool_call_count + next_calls > budgets.max_tool_calls:
        return _fail(
            "budget_tool_calls", f"The run would exceed its {budgets.max_tool_calls} tool calls."
        )
    return []


def decide(state: RunState) -> list[Command]:
    status = state.status
    model = state.last_model_step

    if status.is_terminal:
        return []

    if status is RunStatus.PENDING:
        return over_budget(state, next_steps=1) or [
            Transition(RunStatus.RUNNING),
            StartModelCall(),
        ]

    if status is RunStatus.RUNNING:
        if model is None:
            # Started, but the first model call was never recorded (crash between the
            # transition and the step is impossible: they commit together). Start it.
            return over_budget(state, next_steps=1) or [StartModelCall()]
        if model.status is StepStatus.STARTED:
            # Waiting on the model call activity; its result enqueues the next tick.
            return over_budget(state)
        if model.status is StepStatus.FAILED:
            error = model.error or {"code": "model_error", "message": "The model call failed."}
            return [Transition(RunStatus.FAILED, reason=error["code"], error=error)]
        if model.status is StepStatus.COMPLETED:
            if budget := over_budget(state):
                return budget
            if model.tool_calls and not state.turn_tool_calls:
                # The step may finish some of them at once (built-in tools run inside it
                # under eager continuation); the next decision sees which are left.
                return over_budget(state, next_steps=1, next_calls=len(model.tool_calls)) or [
                    CreateToolCalls(model.tool_calls)
                ]
            if model.tool_calls and state.observations_recorded:
                return over_budget(state, next_steps=1) or [StartModelCall()]
            if model.tool_calls and all(call.finished for call in state.turn_tool_calls):
                # Every call finished in the step that created it: no waiting.
                return over_budget(state, next_steps=len(state.turn_tool_calls) + 1) or [
                    RecordObservations(state.turn_tool_calls),
                    StartModelCall(),
                ]
            if model.tool_calls:
                return [Transition(RunStatus.WAITING_FOR_TOOLS)]
            if not model.tool_calls:
                return [
                    RecordMessage(model.text or ""),
                    Transition(RunStatus.COMPLETED, output={"text": model.text or ""}),
                ]
        if model.status is StepStatus.CANCELLED:
            return []

    if status is RunStatus.WAITING_FOR_TOOLS:
        if budget := over_budget(state):
            return budget
        if state.observations_recorded:
            # Observations commit together with the move back to RUNNING.
            raise ImpossibleState(f"observations recorded while still waiting: {state!r}")
        if state.turn_tool_calls and all(call.finished for call in state.turn_tool_calls):
            # Results in, observations recorded and the next model turn started: one commit.
            return over_budget(state, next_steps=len(state.turn_tool_calls) + 1) or [
                RecordObservations(state.turn_tool_calls),
                Transition(RunStatus.RUNNING),
                StartModelCall(),
            ]
        return []

    if status in (RunStatus.WAITING_FOR_APPROVAL, RunStatus.WAITING_FOR_SUBRUN):
        # Approvals and sub-runs arrive in later issues; until then nothing moves these.
        return over_budget(state)

    raise ImpossibleState(f"no rule for {state!r}")
