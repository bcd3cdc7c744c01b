"""A scripted agent end to end under a real Celery worker process."""

from __future__ import annotations

import pytest

from agentmaestro.runs import dispatch
from agentmaestro.runs.models import AgentStep, RunEvent, ToolCall
from agentmaestro.runs.services.runs import run_create
from tests.engine.helpers import scripted_agent, wait_until_finished
from tests.factories import Personas
from tests.live import Worker

pytestmark = pytest.mark.django_db(transaction=True)

THREE_TURNS = [
    {
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "2 + 3"}},
            {"name": "echo", "arguments": {"value": "hi"}},
        ]
    },
    {
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "5 * 7"}},
            {"name": "echo", "arguments": {"value": [1, 2]}},
        ]
    },
    {"text": "The answers are 5 and 35."},
]


def test_three_turns_with_two_parallel_tool_calls_complete(
    personas: Personas, engine_worker: Worker
) -> None:
    agent = scripted_agent(personas.workspace, THREE_TURNS)
    run = run_create(agent=agent, input={"prompt": "compute"}, created_by=personas.member)
    dispatch.enqueue_tick(run.id)
    run = wait_until_finished(run)
    assert run.status == "COMPLETED", (run.error, engine_worker.log()[-3000:])
    assert run.output == {"text": "The answers are 5 and 35."}
    steps = list(AgentStep.objects.filter(run=run).order_by("index").values_list("kind", "status"))
    assert steps == [
        ("MODEL_CALL", "COMPLETED"),
        ("TOOL_CALL", "COMPLETED"),
        ("OBSERVATION", "COMPLETED"),
        ("OBSERVATION", "COMPLETED"),
        ("MODEL_CALL", "COMPLETED"),
        ("TOOL_CALL", "COMPLETED"),
        ("OBSERVATION", "COMPLETED"),
        ("OBSERVATION", "COMPLETED"),
        ("MODEL_CALL", "COMPLETED"),
        ("MESSAGE", "COMPLETED"),
    ]
    results = sorted((c.tool_name, str(c.result)) for c in ToolCall.objects.filter(run=run))
    assert results == [
        ("calculator", "{'value': 35}"),
        ("calculator", "{'value': 5}"),
        ("echo", "{'echo': 'hi'}"),
        ("echo", "{'echo': [1, 2]}"),
    ]
    assert all(c.status == "SUCCEEDED" and c.attempt == 1 for c in ToolCall.objects.filter(run=run))
    # Under eager continuation (the default) each model turn is answered inside its step
    # and announced finished, the built-in tools run inside the same step (created
    # finished, so the run never waits for them), and each turn is one commit.
    model_turn = ["step.created"]  # finished, with its usage
    tool_turn = [*model_turn, "step.created", *["tool_call.created"] * 2, *["step.created"] * 2]
    types = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("type", flat=True))
    assert types == [
        "run.created",
        "run.status_changed",
        *tool_turn,
        *tool_turn,
        *model_turn,
        "step.created",
        "run.status_changed",
    ]
    transitions = [
        (e.payload["from_status"], e.payload["to_status"])
        for e in RunEvent.objects.filter(run=run, type="run.status_changed").order_by("seq")
    ]
    assert transitions == [("PENDING", "RUNNING"), ("RUNNING", "COMPLETED")]
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    run.refresh_from_db()
    assert run.input_tokens > 0
    assert run.output_tokens > 0
