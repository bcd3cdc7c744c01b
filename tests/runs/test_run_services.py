"""Every service that emits events, checked with verify_action: its events describe its change."""

from __future__ import annotations

from agentmaestro.runs.services.runs import run_add_note, run_create, run_record_usage
from agentmaestro.runs.services.steps import (
    step_append,
    step_update,
    tool_call_create,
    tool_call_update,
)
from agentmaestro.runs.services.transitions import run_transition
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus, ToolCallStatus
from tests.factories import Personas
from tests.replay import assert_replays, verify_action


def test_a_full_agent_like_history_folds_to_its_snapshot(personas: Personas) -> None:
    run = personas.run({"prompt": "add 2 and 3"})
    verify_action(run.id, lambda: run_transition(run_id=run.id, to_status=RunStatus.RUNNING))
    model = verify_action(
        run.id,
        lambda: step_append(run_id=run.id, kind=StepKind.MODEL_CALL, payload={"messages": 1}),
    )
    verify_action(
        run.id,
        lambda: step_update(
            run_id=run.id,
            index=model.index,
            status=StepStatus.COMPLETED,
            payload={"messages": 1, "tool_calls": ["add"]},
        ),
    )
    verify_action(run.id, lambda: run_record_usage(run_id=run.id, input_tokens=12, output_tokens=7))
    tool_step = verify_action(
        run.id, lambda: step_append(run_id=run.id, kind=StepKind.TOOL_CALL, payload={})
    )
    call = verify_action(
        run.id,
        lambda: tool_call_create(
            run_id=run.id,
            step=tool_step,
            tool_name="add",
            arguments={"a": 2, "b": 3},
            provider_call_id="call_1",
        ),
    )
    verify_action(
        run.id, lambda: run_transition(run_id=run.id, to_status=RunStatus.WAITING_FOR_TOOLS)
    )
    verify_action(
        run.id,
        lambda: tool_call_update(call_id=call.id, status=ToolCallStatus.RUNNING, attempt=1),
    )
    verify_action(
        run.id,
        lambda: tool_call_update(
            call_id=call.id, status=ToolCallStatus.SUCCEEDED, result={"sum": 5}, attempt=1
        ),
    )
    verify_action(run.id, lambda: run_transition(run_id=run.id, to_status=RunStatus.RUNNING))
    verify_action(
        run.id,
        lambda: step_append(
            run_id=run.id,
            kind=StepKind.OBSERVATION,
            payload={"tool_call_id": str(call.id), "result": {"sum": 5}},
            status=StepStatus.COMPLETED,
        ),
    )
    verify_action(run.id, lambda: run_add_note(run_id=run.id, message="half way"))
    verify_action(
        run.id,
        lambda: run_transition(run_id=run.id, to_status=RunStatus.COMPLETED, output={"text": "5"}),
    )
    snapshot = assert_replays(run.id)
    assert snapshot["run"]["status"] == "COMPLETED"
    assert snapshot["run"]["output"] == {"text": "5"}
    assert snapshot["run"]["usage"] == {"input_tokens": 12, "output_tokens": 7}
    assert [s["kind"] for s in snapshot["steps"]] == ["MODEL_CALL", "TOOL_CALL", "OBSERVATION"]
    assert snapshot["tool_calls"][0]["status"] == "SUCCEEDED"
    assert snapshot["tool_calls"][0]["step_index"] == 2
    assert snapshot["last_seq"] == 15


def test_a_child_run_records_its_parent(personas: Personas) -> None:
    parent = personas.run()
    step = step_append(run_id=parent.id, kind=StepKind.SUBRUN, payload={})
    call = tool_call_create(run_id=parent.id, step=step, tool_name="delegate", arguments={})
    child = run_create(
        agent=personas.agent, input={"q": 1}, parent_run=parent, parent_tool_call=call
    )
    snapshot = assert_replays(child.id)
    assert snapshot["run"]["parent_run_id"] == str(parent.id)
    assert snapshot["run"]["parent_tool_call_id"] == str(call.id)
