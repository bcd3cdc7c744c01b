from __future__ import annotations

import itertools

import pytest

from agentmaestro.runs.models import AgentRun, RunEvent
from agentmaestro.runs.services.runs import RunAlreadyFinished, run_cancel
from agentmaestro.runs.services.transitions import IllegalTransition, run_transition
from agentmaestro.runs.states import RUN_TRANSITIONS, TERMINAL_STATUSES, RunStatus
from tests.factories import Personas
from tests.replay import verify_action

# How to bring a fresh (PENDING) run to each status through legal moves.
PATH_TO: dict[RunStatus, list[RunStatus]] = {
    RunStatus.PENDING: [],
    RunStatus.RUNNING: [RunStatus.RUNNING],
    RunStatus.WAITING_FOR_APPROVAL: [RunStatus.RUNNING, RunStatus.WAITING_FOR_APPROVAL],
    RunStatus.WAITING_FOR_TOOLS: [RunStatus.RUNNING, RunStatus.WAITING_FOR_TOOLS],
    RunStatus.WAITING_FOR_SUBRUN: [RunStatus.RUNNING, RunStatus.WAITING_FOR_SUBRUN],
    RunStatus.COMPLETED: [RunStatus.RUNNING, RunStatus.COMPLETED],
    RunStatus.FAILED: [RunStatus.FAILED],
    RunStatus.CANCELLED: [RunStatus.CANCELLED],
}


def run_in(personas: Personas, status: RunStatus) -> AgentRun:
    run = personas.run()
    for step in PATH_TO[status]:
        run = run_transition(run_id=run.id, to_status=step)
    assert run.status == status
    return run


PAIRS = list(itertools.product(RunStatus, RunStatus))


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [pair for pair in PAIRS if pair[1] in RUN_TRANSITIONS[pair[0]]],
    ids=lambda s: s.value,
)
def test_a_legal_transition_is_applied_and_recorded(
    personas: Personas, from_status: RunStatus, to_status: RunStatus
) -> None:
    run = run_in(personas, from_status)
    output = {"answer": 42} if to_status is RunStatus.COMPLETED else None
    error = {"code": "boom", "message": "x"} if to_status is RunStatus.FAILED else None
    after = verify_action(
        run.id,
        lambda: run_transition(
            run_id=run.id, to_status=to_status, reason="test", output=output, error=error
        ),
    )
    assert after.status == to_status
    event = RunEvent.objects.get(run=run, seq=after.last_seq)
    assert event.type == "run.status_changed"
    assert event.payload["from_status"] == from_status
    assert event.payload["to_status"] == to_status
    run.refresh_from_db()
    assert (run.finished_at is not None) == (to_status in TERMINAL_STATUSES)
    assert run.started_at is not None or RunStatus.RUNNING not in [*PATH_TO[from_status], to_status]


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [pair for pair in PAIRS if pair[1] not in RUN_TRANSITIONS[pair[0]]],
    ids=lambda s: s.value,
)
def test_an_illegal_transition_raises_and_writes_nothing(
    personas: Personas, from_status: RunStatus, to_status: RunStatus
) -> None:
    run = run_in(personas, from_status)
    before = list(RunEvent.objects.filter(run=run).values_list("seq", "type"))
    with pytest.raises(IllegalTransition) as caught:
        run_transition(run_id=run.id, to_status=to_status)
    assert caught.value.code == "illegal_transition"
    assert caught.value.details["from_status"] == from_status
    assert list(RunEvent.objects.filter(run=run).values_list("seq", "type")) == before
    run.refresh_from_db()
    assert run.status == from_status
    assert run.last_seq == len(before)


def test_the_database_refuses_a_terminal_run_without_finished_at(personas: Personas) -> None:
    from django.db import IntegrityError, transaction

    run = personas.run()
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentRun.objects.filter(id=run.id).update(status=RunStatus.COMPLETED)


def test_cancelling_cancels_open_tool_calls_with_the_run(personas: Personas) -> None:
    from agentmaestro.runs.services.steps import step_append, tool_call_create, tool_call_update
    from agentmaestro.runs.states import StepKind, ToolCallStatus

    run = run_in(personas, RunStatus.WAITING_FOR_TOOLS)
    step = step_append(run_id=run.id, kind=StepKind.TOOL_CALL, payload={"calls": 2})
    open_call = tool_call_create(run_id=run.id, step=step, tool_name="echo", arguments={"x": 1})
    done_call = tool_call_create(run_id=run.id, step=step, tool_name="echo", arguments={"x": 2})
    tool_call_update(call_id=done_call.id, status=ToolCallStatus.SUCCEEDED, result={"x": 2})

    cancelled = verify_action(
        run.id, lambda: run_cancel(run_id=run.id, by=personas.member, reason="stop")
    )
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.error == {"code": "cancelled", "message": "stop"}
    open_call.refresh_from_db()
    done_call.refresh_from_db()
    assert open_call.status == ToolCallStatus.CANCELLED
    assert done_call.status == ToolCallStatus.SUCCEEDED


def test_cancelling_a_finished_run_is_a_clear_error(personas: Personas) -> None:
    run = run_in(personas, RunStatus.COMPLETED)
    with pytest.raises(RunAlreadyFinished) as caught:
        run_cancel(run_id=run.id)
    assert caught.value.code == "run_already_finished"
    assert caught.value.details == {"status": "COMPLETED"}
