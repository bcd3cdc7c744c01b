"""Tool vetting, budgets and cancellation, under a real Celery worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from agentmaestro.celery import app as celery_app
from agentmaestro.runs import dispatch
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent, ToolCall
from agentmaestro.runs.services.runs import run_cancel, run_create
from agentmaestro.tools.models import ToolExecution
from tests.engine.helpers import ALL_BUILTINS, scripted_agent, use_broker, wait_until_finished
from tests.factories import Personas
from tests.live import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def start(agent: object, prompt: str = "go") -> AgentRun:
    run = run_create(agent=agent, input={"prompt": prompt})  # type: ignore[arg-type]
    dispatch.enqueue_tick(run.id)
    return run


def observations(run: AgentRun) -> list[dict[str, object]]:
    return [
        s.payload for s in AgentStep.objects.filter(run=run, kind="OBSERVATION").order_by("index")
    ]


def test_bad_calls_become_error_observations_the_model_sees(
    personas: Personas, engine_worker: Worker
) -> None:
    agent = scripted_agent(
        personas.workspace,
        [
            {
                "tool_calls": [
                    {"name": "calculator", "arguments": {"expression": "2 +"}},
                    {"name": "rm_rf", "arguments": {"path": "/"}},
                    {"name": "echo", "arguments": {"wrong": 1}},
                    {"name": "current_time", "arguments": {}},
                ]
            },
        ],
        tool_policy={**ALL_BUILTINS, "current_time": {"mode": "deny"}},
    )
    run = wait_until_finished(start(agent))
    assert run.status == "COMPLETED", (run.error, engine_worker.log()[-2000:])
    codes = [o["error"]["code"] for o in observations(run)]  # type: ignore[index]
    assert codes == ["invalid_expression", "unknown_tool", "invalid_arguments", "tool_denied"]
    # Only the calculator ran (inside the step, eager continuation being on): the others
    # were refused before anything ran them, each announced failed in one event.
    created = {
        e.payload["tool_name"]: e.payload
        for e in RunEvent.objects.filter(run=run, type="tool_call.created")
    }
    assert created["calculator"]["attempt"] == 1
    assert [name for name, p in created.items() if p["attempt"] == 0] == [
        "rm_rf",
        "echo",
        "current_time",
    ]
    assert not RunEvent.objects.filter(run=run, type="tool_call.updated").exists()
    assert not ToolExecution.objects.exists()
    # The model's next turn was given every error (the scripted model echoes tool results).
    for code in codes:
        assert code in run.output["text"]
    invalid = ToolCall.objects.get(run=run, tool_name="echo")
    assert invalid.error is not None
    assert "value" in invalid.error["message"]


def test_exceeding_the_tool_call_budget_fails_the_run_with_a_reason(
    personas: Personas, engine_worker: Worker
) -> None:
    agent = scripted_agent(
        personas.workspace,
        [{"tool_calls": [{"name": "echo", "arguments": {"value": i}} for i in range(3)]}],
        max_tool_calls=2,
    )
    run = wait_until_finished(start(agent))
    assert run.status == "FAILED"
    assert run.error["code"] == "budget_tool_calls"
    assert not ToolCall.objects.filter(run=run).exists()


def test_exceeding_the_step_budget_fails_the_run(personas: Personas, engine_worker: Worker) -> None:
    loop = [{"tool_calls": [{"name": "echo", "arguments": {"value": 1}}]}] * 10
    agent = scripted_agent(personas.workspace, loop, max_steps=6)
    run = wait_until_finished(start(agent))
    assert run.status == "FAILED"
    assert run.error["code"] == "budget_steps"
    assert run.step_count <= 6


def test_cancelling_during_a_model_call_discards_its_late_result(
    personas: Personas, engine_worker: Worker
) -> None:
    agent = scripted_agent(personas.workspace, [{"text": "too late", "delay_ms": 1500}])
    run = start(agent)
    deadline = time.monotonic() + 10
    while not AgentStep.objects.filter(run=run, kind="MODEL_CALL", attempt=1).exists():
        assert time.monotonic() < deadline, "the model call never started"
        time.sleep(0.02)
    run_cancel(run_id=run.id, reason="changed my mind")
    time.sleep(2.5)  # the model answers in the meantime
    run.refresh_from_db()
    assert run.status == "CANCELLED"
    assert run.output is None
    step = AgentStep.objects.get(run=run, kind="MODEL_CALL")
    assert step.status == "CANCELLED"
    assert "too late" not in json.dumps(step.payload)
    last = RunEvent.objects.filter(run=run).order_by("-seq").first()
    assert last is not None
    assert last.type == "run.status_changed"
    assert last.payload["to_status"] == "CANCELLED"


def test_a_duplicate_tick_changes_nothing(personas: Personas, engine_worker: Worker) -> None:
    agent = scripted_agent(personas.workspace, [{"text": "hello"}])
    run = wait_until_finished(start(agent))
    before = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    for _ in range(5):
        dispatch.enqueue_tick(run.id)
    time.sleep(1)
    assert list(RunEvent.objects.filter(run=run).values_list("seq", flat=True)) == before


@pytest.fixture
def no_worker() -> Iterator[None]:
    """Enqueued work goes to an in-memory broker nobody consumes: the test drives."""
    previous = celery_app.conf.broker_url
    use_broker("memory://")
    try:
        yield
    finally:
        use_broker(previous)


def test_a_run_failed_by_its_deadline_closes_its_open_calls(
    personas: Personas, no_worker: None
) -> None:
    from django.utils import timezone

    from agentmaestro.runs.engine.tick import tick

    agent = scripted_agent(
        personas.workspace,
        [{"tool_calls": [{"name": "echo", "arguments": {"value": 1}}]}],
        max_wall_seconds=60,
    )
    run = run_create(agent=agent, input={"prompt": "go"})
    # Drive it by hand (no enqueue) to WAITING_FOR_TOOLS with its call still queued.
    tick(run.id)
    from agentmaestro.runs.engine import activities

    step = AgentStep.objects.get(run=run, kind="MODEL_CALL")
    claim = activities.claim_model_call(step.id)
    assert claim is not None
    activities.record_model_result(step.id, claim, activities.run_model_call(step.id, claim))
    tick(run.id)
    call = ToolCall.objects.get(run=run)
    assert call.status == "QUEUED"
    # The agent's wall-clock budget shrinks to 1 s, which the run has already used.
    type(agent).objects.filter(id=agent.id).update(max_wall_seconds=1)
    time.sleep(max(0.0, 1.1 - (timezone.now() - run.created_at).total_seconds()))
    tick(run.id)
    run.refresh_from_db()
    call.refresh_from_db()
    assert run.status == "FAILED"
    assert run.error["code"] == "budget_wall_time"
    assert call.status == "CANCELLED"
    # The queued message, delivered late, finds nothing to run.
    assert activities.claim_tool_call(call.id) is None
    assert not ToolExecution.objects.exists()
