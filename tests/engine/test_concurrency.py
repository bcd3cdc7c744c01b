"""Ticks racing each other, and results racing ticks, on the real PostgreSQL.

Every thread here has its own database connection, and the broker is the in-process
``memory://`` transport, drained by the test: a tick runs only if the engine itself
enqueued it, so a lost wake-up shows up as a run left with work a tick would do.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from agentmaestro.agents.providers.base import ModelResponse, Usage
from agentmaestro.runs.engine import activities
from agentmaestro.runs.engine.decide import RequestedToolCall, decide
from agentmaestro.runs.engine.state import load_state
from agentmaestro.runs.engine.tick import tick
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent, ToolCall
from agentmaestro.runs.services.runs import run_create
from agentmaestro.runs.states import StepKind, StepStatus, ToolCallStatus
from tests.engine.helpers import MemoryBroker, scripted_agent
from tests.factories import Personas

pytestmark = pytest.mark.django_db(transaction=True)


# Driving a run by hand ------------------------------------------------------------


def respond(turn: int, *, tools: int = 1, final: bool = False) -> ModelResponse:
    if final:
        return ModelResponse(text=f"done after {turn} turns", usage=Usage(3, 4))
    return ModelResponse(
        text="",
        tool_calls=tuple(
            RequestedToolCall(f"call_{turn}_{i}", "echo", {"value": [turn, i]})
            for i in range(tools)
        ),
        usage=Usage(3, 1),
    )


def open_model_step(run_id: uuid.UUID) -> AgentStep:
    return AgentStep.objects.get(run_id=run_id, kind=StepKind.MODEL_CALL, status=StepStatus.STARTED)


def finish_model_turn(run_id: uuid.UUID, response: ModelResponse) -> None:
    step = open_model_step(run_id)
    claim = activities.claim_model_call(step.id)
    assert claim is not None
    assert activities.record_model_result(step.id, claim, response)


def finish_tool_calls(run_id: uuid.UUID) -> None:
    for call in ToolCall.objects.filter(run_id=run_id, status=ToolCallStatus.QUEUED):
        claim = activities.claim_tool_call(call.id)
        assert claim is not None
        status, result, error = activities.run_tool_call(call.id, claim)
        assert activities.record_tool_result(call.id, claim, status, result, error)


def transitions(run_id: uuid.UUID) -> list[tuple[str, str]]:
    return [
        (payload["from_status"], payload["to_status"])
        for payload in RunEvent.objects.filter(run_id=run_id, type="run.status_changed")
        .order_by("seq")
        .values_list("payload", flat=True)
    ]


def step_kinds(run_id: uuid.UUID) -> list[str]:
    return list(
        AgentStep.objects.filter(run_id=run_id).order_by("index").values_list("kind", flat=True)
    )


def assert_gapless(run_id: uuid.UUID) -> None:
    seqs = list(
        RunEvent.objects.filter(run_id=run_id).order_by("seq").values_list("seq", flat=True)
    )
    assert seqs == list(range(1, len(seqs) + 1))
    assert AgentRun.objects.get(id=run_id).last_seq == len(seqs)


def nothing_left_to_do(run_id: uuid.UUID) -> bool:
    """True when a fresh tick would find nothing to do: no wake-up is owed."""
    with transaction.atomic():
        locked = AgentRun.objects.select_for_update(of=("self",)).select_related("agent")
        return decide(load_state(locked.get(id=run_id), timezone.now())) == []


def race[T](count: int, action: Callable[[], T]) -> list[T]:
    """``action`` in ``count`` threads released together, each on its own connection."""
    barrier = threading.Barrier(count)

    def racer() -> T:
        try:
            barrier.wait(timeout=30)
            return action()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(racer) for _ in range(count)]
        return [future.result(timeout=60) for future in futures]


def _tick_in_process(run_id: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        outcome = tick(uuid.UUID(run_id))
        results.put(bool(outcome and outcome.commands))
    except BaseException as error:
        results.put(repr(error))
    finally:
        connection.close()


def race_processes(count: int, run_id: uuid.UUID) -> list[object]:
    """``tick(run_id)`` in ``count`` forked OS processes released together."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(count)
    results = context.Queue()
    connections.close_all()  # a forked child must not share the parent's socket
    processes = [
        context.Process(target=_tick_in_process, args=(str(run_id), barrier, results))
        for _ in range(count)
    ]
    try:
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    return outcomes


def a_run(personas: Personas, **agent_fields: Any) -> AgentRun:
    slug = f"racer-{uuid.uuid4().hex[:8]}"
    agent = scripted_agent(personas.workspace, [], slug=slug, **agent_fields)
    return run_create(agent=agent, input={"prompt": "race"}, created_by=personas.member)


def waiting_for_finished_tools(personas: Personas, tools: int = 2) -> AgentRun:
    """A run in WAITING_FOR_TOOLS whose calls have all finished: its next tick is owed."""
    run = a_run(personas)
    tick(run.id)
    finish_model_turn(run.id, respond(0, tools=tools))
    tick(run.id)
    finish_tool_calls(run.id)
    run.refresh_from_db()
    assert run.status == "WAITING_FOR_TOOLS"
    return run


# Concurrent ticks -----------------------------------------------------------------


def test_fifty_racing_ticks_start_a_pending_run_exactly_once(
    personas: Personas, memory_broker: MemoryBroker
) -> None:
    run = a_run(personas)

    outcomes = race(50, lambda: tick(run.id))

    assert sum(1 for outcome in outcomes if outcome and outcome.commands) == 1
    assert transitions(run.id) == [("PENDING", "RUNNING")]
    assert step_kinds(run.id) == ["MODEL_CALL"]
    assert_gapless(run.id)
    assert memory_broker.drain() == [("runs.model_call", open_model_step(run.id).id)]


def test_fifty_racing_ticks_record_finished_tool_calls_exactly_once(
    personas: Personas, memory_broker: MemoryBroker
) -> None:
    run = waiting_for_finished_tools(personas)
    before = transitions(run.id)
    memory_broker.drain()

    outcomes = race(50, lambda: tick(run.id))

    assert sum(1 for outcome in outcomes if outcome and outcome.commands) == 1
    assert transitions(run.id) == [*before, ("WAITING_FOR_TOOLS", "RUNNING")]
    assert step_kinds(run.id) == [
        "MODEL_CALL",
        "TOOL_CALL",
        "OBSERVATION",
        "OBSERVATION",
        "MODEL_CALL",
    ]
    assert_gapless(run.id)
    assert memory_broker.drain() == [("runs.model_call", open_model_step(run.id).id)]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_ticks_racing_in_separate_processes_advance_each_state_once(
    personas: Personas, memory_broker: MemoryBroker
) -> None:
    pending = a_run(personas)
    waiting = waiting_for_finished_tools(personas)
    waiting_before = transitions(waiting.id)

    assert sorted(map(str, race_processes(12, pending.id))) == ["False"] * 11 + ["True"]
    assert sorted(map(str, race_processes(12, waiting.id))) == ["False"] * 11 + ["True"]

    assert transitions(pending.id) == [("PENDING", "RUNNING")]
    assert step_kinds(pending.id) == ["MODEL_CALL"]
    assert transitions(waiting.id) == [*waiting_before, ("WAITING_FOR_TOOLS", "RUNNING")]
    assert step_kinds(waiting.id).count("OBSERVATION") == 2
    assert step_kinds(waiting.id).count("MODEL_CALL") == 2
    assert_gapless(pending.id)
    assert_gapless(waiting.id)


# Lost wake-ups --------------------------------------------------------------------


class DbThread:
    """One thread with its own database connection, kept open across many jobs."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                action, future = job
                try:
                    future.set_result(action())
                except BaseException as error:
                    future.set_exception(error)
        finally:
            connection.close()

    def submit[T](self, action: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self.jobs.put((action, future))
        return future

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=10)


def deliver_ticks(broker: MemoryBroker) -> list[tuple[str, Any]]:
    """Run every enqueued tick (and the ticks those enqueue); return the activities."""
    started: list[tuple[str, Any]] = []
    while messages := broker.drain():
        for task, argument in messages:
            if task == "runs.tick":
                tick(uuid.UUID(argument))
            else:
                started.append((task, argument))
    return started


def test_a_result_landing_while_a_tick_holds_the_lock_is_never_lost(
    personas: Personas, memory_broker: MemoryBroker
) -> None:
    """1,000 races of results against a tick that holds the run's lock.

    Each model turn asks for two tool calls. In one race the model's answer is recorded
    while a tick runs; in the next the two tool results are recorded at the same moment
    by two threads, while a tick runs. Half the ticks keep their transaction (and the
    lock) open a little longer, so the results must wait. Then only the ticks the engine
    itself enqueued are run: the run must have moved on, owing nothing.
    """
    rng = random.Random(20261125)
    ticker, recorders = DbThread(), (DbThread(), DbThread())
    races = 0
    try:
        while races < 1000:
            turns = 20
            run = a_run(personas, max_steps=1000, max_tool_calls=1000)
            tick(run.id)
            memory_broker.drain()  # the first model call: this test claims it itself
            for turn in range(turns):
                final = turn == turns - 1
                step = open_model_step(run.id)
                claim = activities.claim_model_call(step.id)
                assert claim is not None
                answer = respond(turn, tools=2, final=final)
                races += 1
                race_results_against_a_tick(
                    rng,
                    ticker,
                    [
                        (
                            recorders[0],
                            partial(activities.record_model_result, step.id, claim, answer),
                        )
                    ],
                    run.id,
                )
                started = deliver_ticks(memory_broker)
                if final:
                    assert AgentRun.objects.get(id=run.id).status == "COMPLETED"
                    break
                # Only a tick that ran after the answer could have started the tool calls.
                assert [task for task, _ in started] == ["runs.tool_call"] * 2, f"race {races}"
                claims = []
                for _, argument in started:
                    call_id = uuid.UUID(argument)
                    tool_claim = activities.claim_tool_call(call_id)
                    assert tool_claim is not None
                    claims.append((call_id, tool_claim))
                races += 1
                race_results_against_a_tick(
                    rng,
                    ticker,
                    [
                        (
                            recorder,
                            partial(
                                activities.record_tool_result,
                                call_id,
                                tool_claim,
                                ToolCallStatus.SUCCEEDED,
                                {"echo": [turn, i]},
                                None,
                            ),
                        )
                        for i, (recorder, (call_id, tool_claim)) in enumerate(
                            zip(recorders, claims, strict=True)
                        )
                    ],
                    run.id,
                )
                started = deliver_ticks(memory_broker)
                assert [task for task, _ in started] == ["runs.model_call"], f"race {races}"
            assert nothing_left_to_do(run.id)
            assert_gapless(run.id)
            assert step_kinds(run.id).count("OBSERVATION") == 2 * (turns - 1)
    finally:
        ticker.stop()
        for recorder in recorders:
            recorder.stop()


def race_results_against_a_tick(
    rng: random.Random,
    ticker: DbThread,
    results: list[tuple[DbThread, Callable[[], bool]]],
    run_id: uuid.UUID,
) -> None:
    """A tick takes the run's lock; meanwhile each result is recorded in its own thread."""
    locked = threading.Event()
    together = threading.Barrier(len(results))

    def slow_tick() -> None:
        with transaction.atomic():
            tick(run_id)  # takes the run's lock, which the outer transaction keeps
            locked.set()
            time.sleep(rng.uniform(0.0005, 0.002))

    def plain_tick() -> None:
        locked.set()
        tick(run_id)

    def at_once(record: Callable[[], bool]) -> bool:
        together.wait(timeout=10)
        return record()

    ticking = ticker.submit(slow_tick if rng.random() < 0.5 else plain_tick)
    locked.wait(timeout=10)
    recordings = [thread.submit(partial(at_once, record)) for thread, record in results]
    ticking.result(timeout=30)
    assert [recording.result(timeout=30) for recording in recordings] == [True] * len(results)


def test_a_turn_whose_tool_calls_are_all_refused_wakes_itself(
    personas: Personas, memory_broker: MemoryBroker
) -> None:
    """No activity will report back for a refused call, so the tick must not wait for one."""
    run = a_run(personas)
    tick(run.id)
    step = open_model_step(run.id)
    claim = activities.claim_model_call(step.id)
    assert claim is not None
    refused = ModelResponse(
        text="",
        tool_calls=(
            RequestedToolCall("call_0_0", "no_such_tool", {}),
            RequestedToolCall("call_0_1", "echo", {"wrong": "arguments"}),
        ),
    )
    memory_broker.drain()
    assert activities.record_model_result(step.id, claim, refused)

    started = deliver_ticks(memory_broker)

    assert nothing_left_to_do(run.id)
    assert step_kinds(run.id) == [
        "MODEL_CALL",
        "TOOL_CALL",
        "OBSERVATION",
        "OBSERVATION",
        "MODEL_CALL",
    ]
    assert started == [("runs.model_call", open_model_step(run.id).id)]


def test_ticks_of_two_runs_of_one_agent_do_not_wait_for_each_other(
    personas: Personas, memory_broker: MemoryBroker
) -> None:
    """A tick locks its run's row, not the agent's: runs of one agent tick in parallel."""
    agent = scripted_agent(personas.workspace, [], slug="shared")
    first, second = (
        run_create(agent=agent, input={"prompt": str(i)}, created_by=personas.member)
        for i in range(2)
    )
    locked, release = threading.Event(), threading.Event()

    def slow_tick() -> None:
        with transaction.atomic():
            tick(first.id)
            locked.set()
            release.wait(timeout=10)

    other = DbThread()
    try:
        ticking = other.submit(slow_tick)
        assert locked.wait(timeout=10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            outcome = tick(second.id)
        release.set()
        ticking.result(timeout=10)
    finally:
        release.set()
        other.stop()
    assert outcome is not None
    assert outcome.commands
    assert transitions(first.id) == transitions(second.id) == [("PENDING", "RUNNING")]
