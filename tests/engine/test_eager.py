"""Eager continuation and the two forms of the step store write the same runs.

Each scenario runs a scripted agent in this process on the real PostgreSQL, with the
broker on ``memory://`` and every message delivered by the test through the real
Celery task functions, so the only difference between two runs is the one under test.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from django.conf import settings

from agentmaestro.runs import tasks
from agentmaestro.runs.engine import store
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent, ToolCall
from agentmaestro.runs.replay import fold
from agentmaestro.runs.selectors import run_events_since
from agentmaestro.runs.services.runs import run_create
from agentmaestro.tools.models import ToolExecution
from tests.engine.helpers import MemoryBroker, scripted_agent
from tests.engine.test_agent_loop import THREE_TURNS
from tests.factories import Personas

pytestmark = pytest.mark.django_db(transaction=True)

TASKS: dict[str, Any] = {
    "runs.tick": tasks.run_tick,
    "runs.model_call": tasks.model_call,
    "runs.tool_call": tasks.tool_call,
}


def deliver_all(broker: MemoryBroker) -> int:
    """Run every message (and those they send) through its task; return how many."""
    delivered = 0
    while messages := broker.drain():
        for name, argument in messages:
            TASKS[name](argument)
            delivered += 1
    return delivered


def normalized(value: Any) -> Any:
    """A payload with its identities and timestamps blanked: what must match across runs."""
    if isinstance(value, dict):
        return {
            key: "<id>"
            if key in {"id", "tool_call_id", "idempotency_key", "agent_id", "workspace_id"}
            else "<time>"
            if key == "at" or key.endswith("_at")
            else normalized(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [normalized(item) for item in value]
    return value


def log_of(run: AgentRun) -> list[tuple[str, Any]]:
    return [
        (event.type, normalized(event.payload))
        for event in RunEvent.objects.filter(run=run).order_by("seq")
    ]


def folded(run: AgentRun, *, with_seq: bool = True) -> Any:
    """The run as its log describes it (runs/replay.py), identities and times blanked
    (and, unless ``with_seq``, how many events it took to say so)."""
    snapshot = fold(run_events_since(run.id, 0))
    if not with_seq:
        del snapshot["last_seq"]
    del snapshot["run"]["agent_id"]
    # Calls created in one step share created_at; fold orders those by their random ids.
    snapshot["tool_calls"].sort(key=lambda c: (c["step_index"], c["provider_call_id"]))
    return normalized(snapshot)


def run_scripted(personas: Personas, broker: MemoryBroker, slug: str) -> tuple[AgentRun, int]:
    agent = scripted_agent(personas.workspace, THREE_TURNS, slug=slug)
    run = run_create(agent=agent, input={"prompt": "compute"}, created_by=personas.member)
    tasks.run_tick(str(run.id))
    delivered = deliver_all(broker)
    run.refresh_from_db()
    assert run.status == "COMPLETED", run.error
    return run, delivered


@pytest.fixture
def broker(memory_broker: MemoryBroker) -> MemoryBroker:
    return memory_broker


@pytest.fixture
def eager_slice(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_slice(ms: float) -> None:
        monkeypatch.setattr(settings.CONFIG, "eager_slice_ms", ms)

    return set_slice


def test_eager_continuation_writes_the_run_the_broker_path_writes(
    personas: Personas, broker: MemoryBroker, eager_slice: Any
) -> None:
    eager_slice(0)
    plain, plain_messages = run_scripted(personas, broker, "plain")
    eager_slice(60_000)
    eager, eager_messages = run_scripted(personas, broker, "eager")

    # The same run, ids and times aside: the same steps, calls, results and output.
    assert folded(eager, with_seq=False) == folded(plain, with_seq=False)
    assert eager.output == plain.output == {"text": "The answers are 5 and 35."}
    assert eager.step_count == plain.step_count == 10
    # The broker path sent a message per activity; eager continuation none at all.
    assert plain_messages == 3 + 4  # 3 model calls, 4 tool calls
    assert eager_messages == 0
    # Eager continuation says it in fewer events: each model turn is announced finished
    # (answered inside its step), each built-in call created finished (run inside its
    # step), and the run never waits for tools.
    assert Counter(type_ for type_, _ in log_of(eager)) == {
        "run.created": 1,
        "run.status_changed": 2,  # PENDING -> RUNNING -> COMPLETED
        "step.created": 10,
        "tool_call.created": 4,
    }
    plain_types = Counter(type_ for type_, _ in log_of(plain))
    assert plain_types["run.status_changed"] == 6  # two waits for tools
    assert plain_types["tool_call.updated"] == 8  # claimed, then finished
    assert plain_types["step.updated"] == 3
    # Each tool ran once. Through the broker, the executor recorded it under the call's
    # idempotency key; inside a step, the call row written in the same commit is the
    # record (a step that rolls back ran nothing anyone can see).
    plain_keys = [c.idempotency_key for c in ToolCall.objects.filter(run=plain)]
    assert ToolExecution.objects.filter(idempotency_key__in=plain_keys).count() == 4
    eager_keys = [c.idempotency_key for c in ToolCall.objects.filter(run=eager)]
    assert not ToolExecution.objects.filter(idempotency_key__in=eager_keys).exists()


def test_an_exhausted_time_slice_hands_the_rest_to_the_broker(
    personas: Personas, broker: MemoryBroker, eager_slice: Any
) -> None:
    eager_slice(0.000_001)  # over before the first step commits
    run, delivered = run_scripted(personas, broker, "short-slice")
    assert delivered > 0
    eager_slice(0)
    plain, _ = run_scripted(personas, broker, "plain")
    assert folded(run, with_seq=False) == folded(plain, with_seq=False)


def test_the_hand_written_and_orm_forms_of_the_store_agree(
    personas: Personas, broker: MemoryBroker, eager_slice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One conformance check over both forms (SQLite runs the ORM form; so does this)."""
    eager_slice(60_000)
    hand, _ = run_scripted(personas, broker, "hand-written")
    monkeypatch.setattr(store, "hand_written", lambda: False)
    orm, _ = run_scripted(personas, broker, "orm")

    assert log_of(orm) == log_of(hand)
    assert list(
        AgentStep.objects.filter(run=orm).order_by("index").values_list("kind", "status", "attempt")
    ) == list(
        AgentStep.objects.filter(run=hand)
        .order_by("index")
        .values_list("kind", "status", "attempt")
    )

    def calls(run: AgentRun) -> list[tuple[Any, ...]]:
        return list(
            ToolCall.objects.filter(run=run)
            .order_by("created_at", "position")
            .values_list("tool_name", "status", "attempt", "result", "error", "position")
        )

    assert calls(orm) == calls(hand)
    for run in (hand, orm):
        assert RunEvent.objects.filter(run=run).count() == run.last_seq


def test_a_stale_inline_claim_is_not_recorded_twice(
    personas: Personas, broker: MemoryBroker, eager_slice: Any
) -> None:
    """The tool results of one turn, delivered again after they were recorded, are dropped."""
    from agentmaestro.runs.engine.plan import ToolResult
    from agentmaestro.runs.engine.tick import advance

    eager_slice(60_000)
    run, _ = run_scripted(personas, broker, "twice")
    before = run.last_seq
    call = ToolCall.objects.filter(run=run).order_by("created_at", "position").first()
    assert call is not None
    outcome = advance(run.id, (ToolResult(call.id, call.attempt, result={"echo": "again"}),))
    assert outcome is not None
    assert outcome.accepted == [False]
    run.refresh_from_db()
    assert run.last_seq == before
    call.refresh_from_db()
    assert call.result != {"echo": "again"}
    assert uuid.UUID(str(call.id)) == call.id


def test_a_run_that_moved_between_eager_steps_is_read_again_not_overwritten(
    personas: Personas, broker: MemoryBroker, eager_slice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step planned from memory writes only if the run's last_seq is what its worker
    wrote last: a cancel committed in between makes it write nothing, and the step taken
    again from a locked read finds the run cancelled."""
    from agentmaestro.runs.engine import tick
    from agentmaestro.runs.services.runs import run_cancel
    from tests.replay import assert_replays

    eager_slice(60_000)
    agent = scripted_agent(personas.workspace, THREE_TURNS, slug="moved")
    run = run_create(agent=agent, input={"prompt": "compute"}, created_by=personas.member)
    real = tick.advance
    seen: list[Any] = []

    def cancel_first(*args: Any, continuation: Any = None, **kwargs: Any) -> Any:
        if continuation is not None:  # a step from memory is about to be planned
            if not seen:
                run_cancel(run_id=run.id, reason="changed my mind")
            seen.append(continuation.loaded.run.last_seq)
        return real(*args, continuation=continuation, **kwargs)

    monkeypatch.setattr(tick, "advance", cancel_first)
    tasks.run_tick(str(run.id))
    deliver_all(broker)

    run.refresh_from_db()
    assert run.status == "CANCELLED"
    # The eager step was planned once, from the state before the cancel, and wrote
    # nothing: the log ends with the cancel, and holds one model turn only.
    assert len(seen) == 1
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert events[-1].type == "run.status_changed"
    assert events[-1].payload["to_status"] == "CANCELLED"
    assert events[-1].seq == seen[0] + 1 == run.last_seq
    assert AgentStep.objects.filter(run=run, kind="MODEL_CALL").count() == 1
    assert_replays(run.id)


def test_the_step_write_refuses_a_run_that_moved(personas: Personas) -> None:
    """The compare-and-set itself: a stale expected last_seq writes no row at all."""
    from django.utils import timezone

    from agentmaestro.runs.engine.store import Changes, Stale, write_changes
    from agentmaestro.runs.events.types import NewEvent

    run = run_create(agent=personas.agent, input={"prompt": "x"}, created_by=personas.member)
    before = (run.last_seq, AgentStep.objects.count(), RunEvent.objects.count())
    run.step_count = 1
    changes = Changes(run=run, expect_seq=run.last_seq - 1)
    changes.new_steps.append(
        AgentStep(
            run_id=run.id,
            index=1,
            kind="MESSAGE",
            status="COMPLETED",
            payload={"text": "x"},
            created_at=timezone.now(),
            finished_at=timezone.now(),
        )
    )
    changes.events.append(NewEvent("run.note", {"message": "never"}))
    with pytest.raises(Stale):
        write_changes(changes, timezone.now())
    run.refresh_from_db()
    assert (run.last_seq, AgentStep.objects.count(), RunEvent.objects.count()) == before
