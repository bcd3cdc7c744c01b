"""Random interleavings of ticks and activities, with duplicates, losses and expired leases.

Hypothesis plays the broker and the workers: it delivers the messages the engine
enqueued in any order (or twice, or never), claims activities, finishes them (or twice,
or lets the worker die holding the claim), and lets time pass so leases expire and the
reconciler runs. Whatever it does, a run's transitions are a legal path that never
leaves one state twice, its log is gapless and folds into its snapshot, a superseded
attempt's result is refused, and the run completes once driven to quiescence — without
the reconciler unless a message or a worker was lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmaestro.agents.providers.base import ModelResponse, Usage
from agentmaestro.runs.engine import activities
from agentmaestro.runs.engine.decide import RequestedToolCall
from agentmaestro.runs.engine.tick import tick
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent, ToolCall
from agentmaestro.runs.services.reconciler import reconcile
from agentmaestro.runs.services.runs import run_create
from agentmaestro.runs.states import RUN_TRANSITIONS, RunStatus, StepStatus, ToolCallStatus
from agentmaestro.tools.executors import execute_tool
from agentmaestro.tools.models import ToolExecution
from tests.engine.helpers import MemoryBroker, scripted_agent
from tests.factories import Personas
from tests.replay import assert_replays

pytestmark = pytest.mark.django_db(transaction=True)

Message = tuple[str, Any]
# The broker is memory:// (the memory_broker fixture); any handle drains it.
BROKER = MemoryBroker()


# Scripts: what the model answers on each turn ------------------------------------

tool_requests = st.lists(
    st.sampled_from(["echo", "calculator", "no_such_tool"]), min_size=1, max_size=3
)
scripts = st.lists(tool_requests, min_size=0, max_size=3)  # the tool turns; a final one follows


def response(script: list[list[str]], turn: int) -> ModelResponse:
    if turn >= len(script):
        return ModelResponse(text="done", usage=Usage(2, 1))
    arguments = {"echo": {"value": turn}, "calculator": {"expression": f"{turn} + 1"}}
    return ModelResponse(
        text="",
        tool_calls=tuple(
            RequestedToolCall(f"call_{turn}_{i}", name, arguments.get(name, {}))
            for i, name in enumerate(script[turn])
        ),
        usage=Usage(2, 1),
    )


# The harness: broker and workers under Hypothesis's control -----------------------


@dataclass
class InFlight:
    """An activity claimed by a 'worker' that has not reported yet."""

    task: str
    target: Any
    claim: activities.Claim


@dataclass
class World:
    run_id: uuid.UUID
    script: list[list[str]]
    messages: list[Message] = field(default_factory=list)
    in_flight: list[InFlight] = field(default_factory=list)
    lost_something: bool = False

    def collect(self) -> None:
        # The reconciler also wakes runs that earlier (failed, shrinking) examples left;
        # and it lists work in no particular order, so sort it: examples must replay.
        ours = [(key, message) for message in BROKER.drain() if (key := self.key(message))]
        self.messages += [message for _, message in sorted(ours)]

    def key(self, message: Message) -> tuple[str, int, str] | None:
        """A stable sort key for one of this run's messages; None for another run's."""
        task, argument = message
        if task == "runs.tick":
            return (task, 0, "") if argument == str(self.run_id) else None
        if task == "runs.model_call":
            step = AgentStep.objects.filter(id=argument, run_id=self.run_id).first()
            return (task, step.index, "") if step else None
        call = ToolCall.objects.filter(id=argument, run_id=self.run_id).first()
        return (task, 0, call.provider_call_id) if call else None

    def deliver(self, index: int, *, again_later: bool = False) -> None:
        task, argument = self.messages[index] if again_later else self.messages.pop(index)
        if task == "runs.tick":
            tick(uuid.UUID(argument))
        elif task == "runs.model_call":
            if claim := activities.claim_model_call(argument):
                self.in_flight.append(InFlight(task, argument, claim))
        elif task == "runs.tool_call" and (
            claim := activities.claim_tool_call(uuid.UUID(argument))
        ):
            self.in_flight.append(InFlight(task, uuid.UUID(argument), claim))
        self.collect()

    def finish(self, index: int, *, again_later: bool = False) -> None:
        work = self.in_flight[index] if again_later else self.in_flight.pop(index)
        if work.task == "runs.model_call":
            step = AgentStep.objects.get(id=work.target)
            current = step.status == StepStatus.STARTED and step.attempt == work.claim.attempt
            answer = response(self.script, step.payload["turn"])
            recorded = activities.record_model_result(work.target, work.claim, answer)
        else:
            call = ToolCall.objects.select_related("tool").get(id=work.target)
            current = call.status == ToolCallStatus.RUNNING and call.attempt == work.claim.attempt
            outcome = execute_tool(call)
            status = ToolCallStatus.FAILED if outcome.error else ToolCallStatus.SUCCEEDED
            recorded = activities.record_tool_result(
                work.target, work.claim, status, outcome.result, outcome.error
            )
        # The fencing token at work: only the current attempt's result is kept.
        assert recorded == current, (work, current)
        self.collect()

    def crash(self, index: int) -> None:
        """The worker holding this claim dies: it never reports, its lease stays."""
        self.in_flight.pop(index)
        self.lost_something = True

    def lose(self, index: int) -> None:
        self.messages.pop(index)
        self.lost_something = True

    def spurious_tick(self) -> None:
        tick(self.run_id)
        self.collect()

    def time_passes(self) -> None:
        """Every lease expires, and the reconciler makes its pass."""
        past = timezone.now() - timedelta(seconds=1)
        AgentStep.objects.filter(run_id=self.run_id, status=StepStatus.STARTED).exclude(
            lease_expires_at=None
        ).update(lease_expires_at=past)
        ToolCall.objects.filter(run_id=self.run_id, status=ToolCallStatus.RUNNING).update(
            lease_expires_at=past
        )
        reconcile(everything=True)
        self.collect()

    def quiesce(self) -> None:
        """Deliver everything and finish everything, in order, until nothing is left."""
        for _ in range(500):
            if self.messages:
                self.deliver(0)
            elif self.in_flight:
                self.finish(0)
            else:
                return
        raise AssertionError("no quiescence after 500 deliveries")


def assert_transitions_are_a_legal_path(run_id: uuid.UUID) -> None:
    chain = [
        (RunStatus(p["from_status"]), RunStatus(p["to_status"]))
        for p in RunEvent.objects.filter(run_id=run_id, type="run.status_changed")
        .order_by("seq")
        .values_list("payload", flat=True)
    ]
    current = RunStatus.PENDING
    for from_status, to_status in chain:
        assert from_status is current, f"{chain}: left {from_status} but the run was {current}"
        assert to_status in RUN_TRANSITIONS[from_status], f"{chain}: illegal move"
        current = to_status


def expected_steps(script: list[list[str]]) -> list[str]:
    steps = []
    for calls in script:
        steps += ["MODEL_CALL", "TOOL_CALL"] + ["OBSERVATION"] * len(calls)
    return [*steps, "MODEL_CALL", "MESSAGE"]


def expected_transitions(script: list[list[str]]) -> list[tuple[str, str]]:
    # A turn waits for its tools unless every call was refused (nothing to wait for: its
    # error observations are recorded in the step that refused them).
    waits = sum(1 for calls in script if set(calls) != {"no_such_tool"})
    turns = [("RUNNING", "WAITING_FOR_TOOLS"), ("WAITING_FOR_TOOLS", "RUNNING")] * waits
    return [("PENDING", "RUNNING"), *turns, ("RUNNING", "COMPLETED")]


ACTIONS = ["deliver", "finish", "deliver_twice", "finish_twice", "tick", "lose", "crash", "time"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=scripts, data=st.data())
def test_any_interleaving_of_ticks_and_activities_completes_the_run_once(
    personas: Personas, memory_broker: MemoryBroker, script: list[list[str]], data: st.DataObject
) -> None:
    agent = scripted_agent(personas.workspace, [], slug=f"prop-{uuid.uuid4().hex[:8]}")
    run = run_create(agent=agent, input={"prompt": "go"}, created_by=personas.member)
    world = World(run.id, script)
    world.spurious_tick()

    for _ in range(data.draw(st.integers(0, 30), label="chaos steps")):
        enabled = [
            action
            for action in ACTIONS
            if (action not in {"deliver", "deliver_twice", "lose"} or world.messages)
            and (action not in {"finish", "finish_twice", "crash"} or world.in_flight)
        ]
        action = data.draw(st.sampled_from(enabled), label="action")
        queue = world.messages if "deliver" in action or action == "lose" else world.in_flight
        index = data.draw(st.integers(0, len(queue) - 1)) if queue else 0
        match action:
            case "deliver" | "deliver_twice":
                world.deliver(index, again_later=action == "deliver_twice")
            case "finish" | "finish_twice":
                world.finish(index, again_later=action == "finish_twice")
            case "tick":
                world.spurious_tick()
            case "lose":
                world.lose(index)
            case "crash":
                world.crash(index)
            case "time":
                world.time_passes()

    world.quiesce()
    if not world.lost_something:
        # Nothing was lost, so the engine's own messages must have been enough.
        run.refresh_from_db()
        assert run.status == "COMPLETED", "stuck without the reconciler: a lost wake-up"
    for _ in range(5):
        world.time_passes()
        world.quiesce()

    run.refresh_from_db()
    assert run.status == "COMPLETED", (run.status, run.error)
    assert_transitions_are_a_legal_path(run.id)
    transitions = [
        (p["from_status"], p["to_status"])
        for p in RunEvent.objects.filter(run_id=run.id, type="run.status_changed")
        .order_by("seq")
        .values_list("payload", flat=True)
    ]
    assert transitions == expected_transitions(script)
    kinds = list(AgentStep.objects.filter(run=run).order_by("index").values_list("kind", flat=True))
    assert kinds == expected_steps(script)
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, run.last_seq + 1))
    for call in ToolCall.objects.filter(run=run, status=ToolCallStatus.SUCCEEDED):
        execution = ToolExecution.objects.get(idempotency_key=call.idempotency_key)
        assert execution.result == call.result
    assert_replays(run.id)
    assert AgentRun.objects.get(id=run.id).tick_failures == 0
