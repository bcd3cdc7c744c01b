"""decide() for every (status, situation) pair. Pure: no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agentmaestro.runs.engine.decide import (
    Budgets,
    CreateToolCalls,
    ImpossibleState,
    RecordMessage,
    RecordObservations,
    RequestedToolCall,
    RunState,
    StartModelCall,
    StepView,
    ToolCallView,
    Transition,
    decide,
)
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus, ToolCallStatus

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CALLS = (
    RequestedToolCall("c1", "calculator", {"expression": "1+1"}),
    RequestedToolCall("c2", "echo", {"value": 1}),
)


def model(
    status: StepStatus, *, calls: tuple[RequestedToolCall, ...] = (), text: str = ""
) -> StepView:
    return StepView(
        1,
        StepKind.MODEL_CALL,
        status,
        text=text,
        tool_calls=calls,
        error={"code": "provider_auth", "message": "bad key"}
        if status is StepStatus.FAILED
        else None,
    )


def tool(status: ToolCallStatus) -> ToolCallView:
    return ToolCallView("id", "calculator", status, {"value": 2})


def state(status: RunStatus, **changes: object) -> RunState:
    base = RunState(
        status=status,
        now=NOW,
        budgets=Budgets(
            max_steps=50, max_tool_calls=50, max_tokens=1000, deadline=NOW + timedelta(hours=1)
        ),
        step_count=1,
        tool_call_count=0,
        tokens_used=10,
        last_model_step=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


SITUATIONS: dict[str, dict[str, object]] = {
    "fresh": {},
    "model_running": {"last_model_step": model(StepStatus.STARTED)},
    "model_failed": {"last_model_step": model(StepStatus.FAILED)},
    "model_cancelled": {"last_model_step": model(StepStatus.CANCELLED)},
    "final_answer": {"last_model_step": model(StepStatus.COMPLETED, text="done")},
    "tools_requested": {"last_model_step": model(StepStatus.COMPLETED, calls=CALLS)},
    "tools_running": {
        "last_model_step": model(StepStatus.COMPLETED, calls=CALLS),
        "turn_tool_calls": (tool(ToolCallStatus.SUCCEEDED), tool(ToolCallStatus.RUNNING)),
    },
    "tools_done": {
        "last_model_step": model(StepStatus.COMPLETED, calls=CALLS),
        "turn_tool_calls": (tool(ToolCallStatus.SUCCEEDED), tool(ToolCallStatus.FAILED)),
    },
    "tools_observed": {
        "last_model_step": model(StepStatus.COMPLETED, calls=CALLS),
        "turn_tool_calls": (tool(ToolCallStatus.SUCCEEDED), tool(ToolCallStatus.FAILED)),
        "observations_recorded": True,
    },
}

FAIL = "FAIL"
IMPOSSIBLE = "IMPOSSIBLE"
NOTHING: list[object] = []

# What each (status, situation) must produce. Terminal statuses never act.
EXPECTED: dict[tuple[RunStatus, str], object] = {}
for situation in SITUATIONS:
    for terminal in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
        EXPECTED[(terminal, situation)] = NOTHING
    for waiting in (RunStatus.WAITING_FOR_APPROVAL, RunStatus.WAITING_FOR_SUBRUN):
        EXPECTED[(waiting, situation)] = NOTHING
    EXPECTED[(RunStatus.PENDING, situation)] = [Transition(RunStatus.RUNNING), StartModelCall()]
EXPECTED.update(
    {
        (RunStatus.RUNNING, "fresh"): [StartModelCall()],
        (RunStatus.RUNNING, "model_running"): NOTHING,
        (RunStatus.RUNNING, "model_failed"): FAIL,
        (RunStatus.RUNNING, "model_cancelled"): NOTHING,
        (RunStatus.RUNNING, "final_answer"): [
            RecordMessage("done"),
            Transition(RunStatus.COMPLETED, output={"text": "done"}),
        ],
        # The step applies one decision at a time and decides again: built-in tools it
        # ran already are finished by then (observed at once), others are waited for.
        (RunStatus.RUNNING, "tools_requested"): [CreateToolCalls(CALLS)],
        (RunStatus.RUNNING, "tools_running"): [Transition(RunStatus.WAITING_FOR_TOOLS)],
        (RunStatus.RUNNING, "tools_done"): [
            RecordObservations(SITUATIONS["tools_done"]["turn_tool_calls"]),  # type: ignore[arg-type]
            StartModelCall(),
        ],
        (RunStatus.RUNNING, "tools_observed"): [StartModelCall()],
        (RunStatus.WAITING_FOR_TOOLS, "tools_running"): NOTHING,
        (RunStatus.WAITING_FOR_TOOLS, "tools_done"): [
            RecordObservations(SITUATIONS["tools_done"]["turn_tool_calls"]),  # type: ignore[arg-type]
            Transition(RunStatus.RUNNING),
            StartModelCall(),
        ],
    }
)
for situation in (
    "fresh",
    "model_running",
    "model_failed",
    "model_cancelled",
    "final_answer",
    "tools_requested",
):
    # Waiting for tools with no unfinished turn calls to wait on: nothing moves it.
    EXPECTED[(RunStatus.WAITING_FOR_TOOLS, situation)] = NOTHING
# Observations are recorded in the same commit that leaves WAITING_FOR_TOOLS.
EXPECTED[(RunStatus.WAITING_FOR_TOOLS, "tools_observed")] = IMPOSSIBLE


def test_the_table_covers_every_pair() -> None:
    assert set(EXPECTED) == {(s, k) for s in RunStatus for k in SITUATIONS}


@pytest.mark.parametrize(("status", "situation"), sorted(EXPECTED, key=str), ids=str)
def test_decide(status: RunStatus, situation: str) -> None:
    expected = EXPECTED[(status, situation)]
    given = state(status, **SITUATIONS[situation])
    if expected == IMPOSSIBLE:
        with pytest.raises(ImpossibleState):
            decide(given)
        return
    commands = decide(given)
    if expected == FAIL:
        assert commands == [
            Transition(
                RunStatus.FAILED,
                reason="provider_auth",
                error={"code": "provider_auth", "message": "bad key"},
            )
        ]
        return
    assert commands == expected


def test_decide_is_deterministic() -> None:
    for status, situation in EXPECTED:
        if EXPECTED[(status, situation)] == IMPOSSIBLE:
            continue
        given = state(status, **SITUATIONS[situation])
        assert decide(given) == decide(given)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"now": NOW + timedelta(hours=2)}, "budget_wall_time"),
        ({"tokens_used": 1001}, "budget_tokens"),
        ({"step_count": 50}, "budget_steps"),
        ({"tool_call_count": 49}, "budget_tool_calls"),
    ],
)
def test_an_exceeded_budget_fails_the_run_with_its_reason(
    changes: dict[str, object], code: str
) -> None:
    # The model asks for two tool calls: one step and two calls more than now.
    given = state(
        RunStatus.RUNNING, last_model_step=model(StepStatus.COMPLETED, calls=CALLS), **changes
    )
    [command] = decide(given)
    assert isinstance(command, Transition)
    assert command.to is RunStatus.FAILED
    assert command.error is not None
    assert command.error["code"] == code
    assert command.reason == code


@pytest.mark.parametrize(
    "status",
    [
        RunStatus.PENDING,
        RunStatus.WAITING_FOR_TOOLS,
        RunStatus.WAITING_FOR_APPROVAL,
        RunStatus.WAITING_FOR_SUBRUN,
    ],
)
def test_the_deadline_is_enforced_in_every_live_status(status: RunStatus) -> None:
    given = state(status, now=NOW + timedelta(hours=2), **SITUATIONS["tools_running"])
    [command] = decide(given)
    assert isinstance(command, Transition)
    assert command.error == {
        "code": "budget_wall_time",
        "message": "The run exceeded its wall-clock deadline.",
    }


def test_a_budget_exactly_reached_is_not_exceeded() -> None:
    given = state(
        RunStatus.RUNNING,
        step_count=49,
        tokens_used=1000,
        last_model_step=model(StepStatus.COMPLETED, text="ok"),
    )
    assert decide(given)[-1] == Transition(RunStatus.COMPLETED, output={"text": "ok"})
