"""The model-call executor (runs/engine/executor.py) in this process, on the real database.

The executor is enabled here as ``agentmaestro worker`` enables it; the broker is on
``memory://``, so every message the engine sends is visible to the test. Worker processes
running it (``--model-calls async``) are covered by tests/engine/test_faults.py
(SIGKILL).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from pydantic import SecretStr

from agentmaestro.agents.models import Agent
from agentmaestro.runs.engine import activities, executor
from agentmaestro.runs.engine.tick import tick
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent
from agentmaestro.runs.services.reconciler import reconcile
from agentmaestro.runs.services.runs import run_create
from agentmaestro.tools.services import builtin_tools_install
from tests.agents.fake_wire import Answer, FakeModelServer, error_reply
from tests.engine.helpers import MemoryBroker, scripted_agent, wait_until_finished
from tests.factories import Personas

pytestmark = pytest.mark.django_db(transaction=True)

Enable = Callable[..., executor.ModelCallExecutor]


@pytest.fixture
def local_executor(memory_broker: MemoryBroker) -> Iterator[Enable]:
    """Enable the executor in this process (with these settings); stopped at the end."""

    def enable(**fields: Any) -> executor.ModelCallExecutor:
        executor.enable(executor.ExecutorSettings(**fields))
        started = executor.current()
        assert started is not None
        return started

    try:
        yield enable
    finally:
        executor.disable(timeout=5)


def slow_turns(delay_ms: int) -> list[dict[str, Any]]:
    return [
        {"delay_ms": delay_ms, "tool_calls": [{"name": "echo", "arguments": {"value": 1}}]},
        {"delay_ms": delay_ms, "tool_calls": [{"name": "echo", "arguments": {"value": 2}}]},
        {"delay_ms": delay_ms, "text": "done"},
    ]


def start(personas: Personas, agent: Agent) -> AgentRun:
    run = run_create(agent=agent, input={"prompt": "go"}, created_by=personas.member)
    tick(run.id)
    return run


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_runs_model_calls_stay_in_the_process_without_a_broker_message(
    personas: Personas, memory_broker: MemoryBroker, local_executor: Enable
) -> None:
    local_executor()
    runs = [
        start(personas, scripted_agent(personas.workspace, slow_turns(50), slug=f"slow-{i}"))
        for i in range(5)
    ]
    for run in runs:
        run = wait_until_finished(run)
        assert run.status == "COMPLETED", run.error
        assert run.output == {"text": "done"}
        steps = AgentStep.objects.filter(run=run, kind="MODEL_CALL")
        assert [(s.status, s.attempt) for s in steps] == [("COMPLETED", 1)] * 3
        seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, run.last_seq + 1))
    # No model call (nor anything else) went through the broker.
    assert memory_broker.drain() == []


def test_calls_past_the_limit_go_to_the_broker(
    personas: Personas, memory_broker: MemoryBroker, local_executor: Enable
) -> None:
    running = local_executor(max_calls=1)
    first = start(personas, scripted_agent(personas.workspace, slow_turns(2000), slug="a"))
    second = start(personas, scripted_agent(personas.workspace, slow_turns(2000), slug="b"))

    assert running.in_flight == 1
    second_step = AgentStep.objects.get(run=second, kind="MODEL_CALL")
    assert memory_broker.drain() == [("runs.model_call", second_step.id)]
    wait_for(lambda: AgentStep.objects.get(run=first, kind="MODEL_CALL").attempt == 1)


def test_a_stopping_executor_gives_back_its_leases_for_the_reconciler(
    personas: Personas, memory_broker: MemoryBroker, local_executor: Enable
) -> None:
    running = local_executor()
    run = start(personas, scripted_agent(personas.workspace, slow_turns(30_000)))
    step = AgentStep.objects.get(run=run, kind="MODEL_CALL")
    wait_for(lambda: AgentStep.objects.get(id=step.id).lease_expires_at is not None)

    running.shutdown(timeout=0.1)

    step.refresh_from_db()
    assert (step.status, step.attempt, step.lease_expires_at) == ("STARTED", 1, None)
    assert not running.submit(step.id)  # a stopped executor takes nothing more
    reconcile(everything=True)
    assert ("runs.model_call", step.id) in memory_broker.drain()


def test_stopping_twice_is_a_no_op(local_executor: Enable) -> None:
    """Celery may signal both a worker's and its process's shutdown (and the tests stop
    an executor their fixture stops again): the second stop must not wait on the event
    loop the first one stopped (it waited 5 s for the SDK clients to close there)."""
    running = local_executor()
    running.shutdown(timeout=0.1)
    started = time.monotonic()
    running.shutdown(timeout=0.1)
    assert time.monotonic() - started < 1.0


def test_a_call_past_its_time_limit_fails_as_a_provider_timeout(
    personas: Personas,
    memory_broker: MemoryBroker,
    local_executor: Enable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(executor, "TIMEOUT_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(activities, "MODEL_MAX_RETRIES", 0)
    local_executor()
    builtin_tools_install(workspace=personas.workspace)
    agent = Agent.objects.create(
        workspace=personas.workspace,
        slug="stuck",
        name="stuck",
        model_settings={
            "provider": "scripted",
            "script": [{"delay_ms": 30_000, "text": "never"}],
            "timeout_seconds": 0.3,
        },
    )
    started = time.monotonic()
    run = wait_until_finished(start(personas, agent), timeout=10)

    assert time.monotonic() - started < 5
    assert run.status == "FAILED"
    assert run.error["code"] == "provider_timeout"


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModelServer]:
    server = FakeModelServer("openai").start()
    monkeypatch.setattr(settings.CONFIG, "openai_api_key", SecretStr("sk-test-executor"))
    monkeypatch.setattr(settings.CONFIG, "openai_base_url", server.base_url)
    yield server
    server.stop()


def test_a_transient_error_is_retried_after_its_lease_was_given_back(
    personas: Personas,
    memory_broker: MemoryBroker,
    local_executor: Enable,
    openai_server: FakeModelServer,
) -> None:
    openai_server.script(
        error_reply("openai", 503, "overloaded", headers=(("retry-after", "0.3"),)),
        Answer(text="second time lucky"),
    )
    local_executor()
    agent = Agent.objects.create(
        workspace=personas.workspace,
        slug="flaky",
        name="flaky",
        model_settings={"provider": "openai", "model": "gpt-test", "timeout_seconds": 5},
    )
    run = wait_until_finished(start(personas, agent))

    assert run.status == "COMPLETED", run.error
    assert run.output == {"text": "second time lucky"}
    refused, accepted = openai_server.requests
    assert accepted.at - refused.at >= 0.25, "the retry did not wait for Retry-After"
    # Claimed twice: the lease was released in between, so the retry could claim again.
    assert AgentStep.objects.get(run=run, kind="MODEL_CALL").attempt == 2
    assert memory_broker.drain() == []


def test_many_calls_are_in_flight_at_once_on_the_openai_wire(
    personas: Personas,
    memory_broker: MemoryBroker,
    local_executor: Enable,
    openai_server: FakeModelServer,
) -> None:
    def by_turn(body: dict[str, Any]) -> Any:
        from tests.agents.fake_wire import Call, Slow

        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if turn < 2:
            return Slow(0.5, Answer(calls=(Call(f"call_{turn}", "echo", '{"value": 1}'),)))
        return Slow(0.5, Answer(text="done"))

    openai_server.respond = by_turn
    local_executor(engine_threads=2)
    builtin_tools_install(workspace=personas.workspace)
    agent = Agent.objects.create(
        workspace=personas.workspace,
        slug="wire",
        name="wire",
        model_settings={"provider": "openai", "model": "gpt-test", "timeout_seconds": 10},
        tool_policy={"echo": {"mode": "allow"}},
    )
    started = time.monotonic()
    runs = [start(personas, agent) for _ in range(30)]
    for run in runs:
        assert wait_until_finished(run, timeout=30).status == "COMPLETED"

    # 90 calls of 0.5 s each: they overlapped, not queued behind each other.
    assert len(openai_server.requests) == 90
    arrivals = sorted(r.at for r in openai_server.requests)
    assert max(Counter(int((a - arrivals[0]) / 0.5) for a in arrivals).values()) >= 20
    assert time.monotonic() - started < 15


def test_a_call_that_fails_unexpectedly_leaves_nothing_to_release(
    personas: Personas,
    memory_broker: MemoryBroker,
    local_executor: Enable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database error while recording a result ends the call: its slot and its claim
    are given up (the lease runs out and the reconciler sends it again)."""
    running = local_executor()

    def broken(claim: Any, outcome: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(executor, "_record", broken)
    run = start(personas, scripted_agent(personas.workspace, slow_turns(20), slug="broken"))
    step = AgentStep.objects.get(run=run, kind="MODEL_CALL")
    assert running.submit(step.id)
    wait_for(lambda: running.in_flight == 0)
    wait_for(lambda: not running._claims)
    step.refresh_from_db()
    # Claimed, never recorded.
    assert step.status == "STARTED"
    assert step.attempt == 1
