"""Crashes under real load: a Celery worker killed with SIGKILL, a broker that forgets.

Both tests run real worker processes on the test database and a private, throwaway
redis-server (never the machine's shared one, which other suites use), put 20 runs in
flight, break something several times, and let the reconciler recover. Afterwards every
run must have completed with exactly the expected steps and events, and every tool
call must have been executed once: through the executor, once under its idempotency
key; inside a step (built-in tools under eager continuation), in the one commit that
created it. Successive workers alternate between eager continuation on and off, so
both paths are broken and recovered, in the same runs.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from agentmaestro.agents.providers.base import ModelResponse
from agentmaestro.celery import app
from agentmaestro.runs import dispatch
from agentmaestro.runs.engine import activities
from agentmaestro.runs.engine.decide import RequestedToolCall
from agentmaestro.runs.engine.tick import tick
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent, ToolCall
from agentmaestro.runs.services.reconciler import reconcile
from agentmaestro.runs.services.runs import run_create
from agentmaestro.runs.states import StepStatus, ToolCallStatus
from agentmaestro.tools.builtins import BUILTIN_TOOLS
from agentmaestro.tools.executors import ToolOutcome, execute_tool
from agentmaestro.tools.models import ToolExecution
from tests.engine.helpers import scripted_agent, use_broker
from tests.factories import Personas
from tests.live import Worker, free_port, start_worker

pytestmark = pytest.mark.django_db(transaction=True)

RUNS = 20
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# How long the reconciler lets a run sit still before waking it (production: 15 s).
STALL_SECONDS = 1.0


def three_turns(delay_ms: int) -> list[dict[str, Any]]:
    """Three slow model turns; the first two each ask for two tool calls at once."""
    return [
        {
            "delay_ms": delay_ms,
            "tool_calls": [
                {"name": "calculator", "arguments": {"expression": f"{delay_ms} + 1"}},
                {"name": "echo", "arguments": {"value": "first"}},
            ],
        },
        {
            "delay_ms": delay_ms,
            "tool_calls": [
                {"name": "calculator", "arguments": {"expression": f"{delay_ms} * 2"}},
                {"name": "echo", "arguments": {"value": ["second"]}},
            ],
        },
        {"delay_ms": delay_ms, "text": f"done in {delay_ms}"},
    ]


EXPECTED_STEPS = [
    "MODEL_CALL",
    "TOOL_CALL",
    "OBSERVATION",
    "OBSERVATION",
    "MODEL_CALL",
    "TOOL_CALL",
    "OBSERVATION",
    "OBSERVATION",
    "MODEL_CALL",
    "MESSAGE",
]
# A tool turn waits for its calls unless they ran inside the step that created them.
WAIT = [("RUNNING", "WAITING_FOR_TOOLS"), ("WAITING_FOR_TOOLS", "RUNNING")]
# Every event of such a run but the status changes (one wait or none per tool turn) and
# the tool calls' updates, whose count depends on how often a call was handed to
# another worker (both checked turn by turn and call by call instead).
EXPECTED_EVENTS = Counter(
    {
        "run.created": 1,
        "step.created": 10,
        # Only the 3 model calls: the other 7 steps are created finished.
        "step.updated": 3,
        "tool_call.created": 4,
    }
)


# A private broker ---------------------------------------------------------------


@dataclass
class PrivateRedis:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: it keeps nothing on disk, so every queued message is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path / "redis.log")
    previous = app.conf.broker_url
    server.start()
    use_broker(server.url)
    try:
        yield server
    finally:
        use_broker(previous)
        server.kill()


@pytest.fixture
def stall_seconds(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(settings.CONFIG, "stall_seconds", STALL_SECONDS)
    return STALL_SECONDS


class Workers:
    """Real worker processes, restarted at will; every one is killed at the end."""

    def __init__(self, tmp_path: Path, broker: PrivateRedis) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.started: list[Worker] = []
        # How the workers make model calls (`agentmaestro worker --model-calls`).
        self.model_calls = "threads"

    @property
    def current(self) -> Worker:
        return self.started[-1]

    def start(self) -> Worker:
        worker = start_worker(
            self.tmp_path,
            name=f"w{len(self.started)}",
            REDIS_URL=self.broker.url,
            AGENTMAESTRO_STALL_SECONDS=str(STALL_SECONDS),
            # Every other worker with eager continuation off: both paths get killed.
            AGENTMAESTRO_EAGER_SLICE_MS="100" if len(self.started) % 2 == 0 else "0",
            AGENTMAESTRO_MODEL_CALLS=self.model_calls,
        )
        self.started.append(worker)
        return worker

    def supervise(self) -> None:
        """Restart the worker if it exited, as a process supervisor would in production.

        Celery 5.7 / kombu can die with "Unrecoverable error" while reconnecting to a
        Redis that went away (seen here: AttributeError in kombu's redis transport);
        the worker then exits, and systemd/Kubernetes would start it again.
        """
        if self.current.process.poll() is not None:
            self.start()

    def logs(self) -> str:
        return "\n".join(worker.log()[-2000:] for worker in self.started)

    def kill_all(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.kill()


@pytest.fixture
def workers(tmp_path: Path, broker: PrivateRedis) -> Iterator[Workers]:
    pool = Workers(tmp_path, broker)
    try:
        yield pool
    finally:
        pool.kill_all()


# Driving and checking -----------------------------------------------------------


def start_runs(
    personas: Personas, rng: random.Random, delay_ms: tuple[int, int] = (50, 200)
) -> list[AgentRun]:
    runs = []
    for i in range(RUNS):
        agent = scripted_agent(
            personas.workspace, three_turns(rng.randint(*delay_ms)), slug=f"slow-{i}"
        )
        run = run_create(agent=agent, input={"prompt": f"run {i}"}, created_by=personas.member)
        dispatch.enqueue_tick(run.id)
        runs.append(run)
    return runs


def work_done() -> int:
    """Events that only a worker writes (the reconciler writes tool calls' requeues)."""
    return RunEvent.objects.exclude(type="tool_call.updated").count()


def more_work_than(count: int, or_all_done: list[AgentRun] | None = None) -> Callable[[], bool]:
    """Workers wrote more than ``count`` events (or every run of ``or_all_done`` ended)."""
    return lambda: work_done() > count or (or_all_done is not None and unfinished(or_all_done) == 0)


def unfinished(runs: list[AgentRun]) -> int:
    return AgentRun.objects.filter(id__in=[r.id for r in runs], finished_at=None).count()


def wait_reconciling(
    condition: Callable[[], bool],
    timeout: float,
    why: str,
    supervise: Callable[[], None] | None = None,
) -> None:
    """Wait for ``condition`` (checked every 0.1 s), running the reconciler every
    STALL_SECONDS meanwhile, as beat would."""
    deadline = time.monotonic() + timeout
    next_pass = time.monotonic()
    while not condition():
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {why}")
        if now >= next_pass:
            if supervise is not None:
                supervise()
            reconcile()
            next_pass = now + STALL_SECONDS
        time.sleep(0.1)


def expire_leases_of_the_dead() -> None:
    """No worker is alive, so every lease belongs to a dead one: let them run out.

    (Leases last minutes in production; the reconciler hands the work on once they do.)
    """
    past = timezone.now() - timedelta(seconds=1)
    AgentStep.objects.filter(status=StepStatus.STARTED).exclude(lease_expires_at=None).update(
        lease_expires_at=past
    )
    ToolCall.objects.filter(status=ToolCallStatus.RUNNING).update(lease_expires_at=past)


def assert_completed_exactly_once(runs: list[AgentRun], logs: str) -> None:
    for run in runs:
        run.refresh_from_db()
        assert run.status == "COMPLETED", (run.id, run.status, run.error, logs)
        delay = run.agent.model_settings["script"][0]["delay_ms"]
        assert run.output == {"text": f"done in {delay}"}
        steps = AgentStep.objects.filter(run=run).order_by("index")
        kinds = list(steps.values_list("kind", "status"))
        assert kinds == [(kind, "COMPLETED") for kind in EXPECTED_STEPS], run.id
        events = list(RunEvent.objects.filter(run=run).order_by("seq"))
        assert [e.seq for e in events] == list(range(1, run.last_seq + 1)), run.id
        counted = Counter(
            e.type for e in events if e.type not in {"tool_call.updated", "run.status_changed"}
        )
        assert counted == EXPECTED_EVENTS, run.id
        created = {e.payload["id"]: e.payload for e in events if e.type == "tool_call.created"}
        in_step = {i for i, p in created.items() if p["status"] == "SUCCEEDED"}
        # The calls of one turn share its step: they waited, or ran in it, together.
        turns = [[i for i, p in created.items() if p["step_index"] == index] for index in (2, 6)]
        expected = [("PENDING", "RUNNING")]
        for turn in turns:
            assert len(turn) == 2, created
            if not in_step.issuperset(turn):
                assert not in_step.intersection(turn), created
                expected += WAIT
        transitions = [
            (e.payload["from_status"], e.payload["to_status"])
            for e in events
            if e.type == "run.status_changed"
        ]
        assert transitions == [*expected, ("RUNNING", "COMPLETED")], run.id

        calls = list(ToolCall.objects.filter(run=run))
        assert sorted((c.tool_name, str(c.result)) for c in calls) == sorted(
            [
                ("calculator", str({"value": delay + 1})),
                ("calculator", str({"value": delay * 2})),
                ("echo", str({"echo": "first"})),
                ("echo", str({"echo": ["second"]})),
            ]
        )
        for call in calls:
            assert call.status == "SUCCEEDED", (call.id, call.status)
            updates = [e for e in events if e.type == "tool_call.updated"]
            if str(call.id) in in_step:
                # Run inside the step that created it: one event says it all.
                assert call.attempt == 1
                assert not [e for e in updates if e.payload["id"] == str(call.id)]
                assert created[str(call.id)]["result"] == call.result
                assert not ToolExecution.objects.filter(idempotency_key=call.idempotency_key)
                continue
            # Each claim is RUNNING; a dead worker's expired claim goes back to QUEUED;
            # exactly one SUCCEEDED ends it.
            statuses = [
                e.payload["status"]
                for e in events
                if e.type == "tool_call.updated" and e.payload["id"] == str(call.id)
            ]
            assert statuses[-1] == "SUCCEEDED", statuses
            assert statuses.count("SUCCEEDED") == 1, statuses
            assert statuses.count("RUNNING") == call.attempt, statuses
            assert statuses.count("QUEUED") == call.attempt - 1, statuses
            execution = ToolExecution.objects.get(idempotency_key=call.idempotency_key)
            assert (execution.result, execution.error) == (call.result, None)
    assert ToolCall.objects.filter(run__in=runs).count() == 4 * RUNS


# The tests ------------------------------------------------------------------------


@pytest.mark.parametrize("model_calls", ["async", "threads"])
def test_a_worker_killed_again_and_again_loses_and_duplicates_nothing(
    personas: Personas, workers: Workers, stall_seconds: float, model_calls: str
) -> None:
    """``async``: killed with model calls in flight on its executor, handed over in-process
    (runs/engine/executor.py); ``threads``: in Celery tasks."""
    rng = random.Random(7)
    runs = start_runs(personas, rng)
    workers.model_calls = model_calls
    workers.start()
    for _ in range(4):
        # Kill it at a random moment once it is busy: in a tick, in a model or tool call.
        wait_reconciling(more_work_than(work_done()), 90, "the new worker made progress")
        time.sleep(rng.uniform(0.05, 0.6))
        workers.current.kill()
        expire_leases_of_the_dead()
        workers.start()
        if not unfinished(runs):
            break
    wait_reconciling(lambda: unfinished(runs) == 0, 150, "every run finished")

    assert_completed_exactly_once(runs, workers.logs())


@pytest.mark.parametrize("model_calls", ["async", "threads"])
def test_a_restarted_redis_that_forgot_every_message_loses_no_run(
    personas: Personas,
    broker: PrivateRedis,
    workers: Workers,
    stall_seconds: float,
    model_calls: str,
) -> None:
    workers.model_calls = model_calls
    rng = random.Random(11)
    # Slower model turns than the other tests: the worker goes on with what it holds
    # while Redis is away, and both restarts must find runs still in flight.
    runs = start_runs(personas, rng, delay_ms=(1000, 2000))
    workers.start()
    for restart in (1, 2):
        wait_reconciling(
            more_work_than(work_done() + 5, or_all_done=runs),
            90,
            "the worker made progress",
            workers.supervise,
        )
        assert unfinished(runs), f"every run finished before Redis restart {restart}"
        broker.kill()
        time.sleep(rng.uniform(0.1, 0.5))
        broker.start()
        use_broker(broker.url)  # the old connections died with it
    wait_reconciling(lambda: unfinished(runs) == 0, 150, "every run finished", workers.supervise)

    assert_completed_exactly_once(runs, workers.logs())


def test_a_tool_call_delivered_twice_at_once_runs_its_tool_once(
    personas: Personas, broker: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease that expires under a slow tool lets a second delivery run beside the first."""
    ran: list[Any] = []

    def slow_echo(args: dict[str, Any]) -> dict[str, Any]:
        ran.append(args)
        time.sleep(0.3)
        return {"echo": args["value"]}

    monkeypatch.setitem(BUILTIN_TOOLS, "echo", replace(BUILTIN_TOOLS["echo"], run=slow_echo))
    agent = scripted_agent(personas.workspace, [])
    run = run_create(agent=agent, input={"prompt": "once"}, created_by=personas.member)
    tick(run.id)
    step = AgentStep.objects.get(run=run, kind="MODEL_CALL")
    claim = activities.claim_model_call(step.id)
    assert claim is not None
    echo = RequestedToolCall("call_0_0", "echo", {"value": "once"})
    activities.record_model_result(step.id, claim, ModelResponse(text="", tool_calls=(echo,)))
    tick(run.id)
    call_id = ToolCall.objects.get(run=run).id
    together = threading.Barrier(2)

    def deliver() -> ToolOutcome:
        try:
            together.wait(timeout=10)
            return execute_tool(ToolCall.objects.select_related("tool").get(id=call_id))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = [f.result(timeout=30) for f in [pool.submit(deliver) for _ in range(2)]]

    assert ran == [{"value": "once"}]
    assert outcomes == [ToolOutcome(result={"echo": "once"})] * 2
    assert ToolExecution.objects.count() == 1
