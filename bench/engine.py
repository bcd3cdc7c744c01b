"""Benchmark of the run engine: what one agent iteration costs, beside LangGraph and a floor.

    ./dev bench engine            # full run, ~6 minutes on a loaded 2-core machine
    ./dev bench engine --quick    # smoke run, ~3 minutes
    ./dev bench engine --only overhead,bytes,concurrency

An *iteration* is one model call plus one tool call. Cases (bench/README.md):

* overhead: a scripted model (no latency) and the built-in ``echo`` tool, runs of 10
  iterations (10 turns with one tool call each, then a final answer), on the distributed
  setup: PostgreSQL, Redis, 2 Celery worker processes. ms per iteration (p50/p99) with 1
  run, iterations/s and runs/s with 20 concurrent runs. Beside it, in alternating rounds:
  - LangGraph's prebuilt ReAct agent (``create_react_agent`` + ``PostgresSaver``,
    ``durability="sync"``) doing the same 10 iterations with a fake chat model, in 2
    processes (10 runs each) as our 2 workers;
  - the floor: the exact SQL our engine issued for one whole run (captured in-process with
    Django's ``execute_wrapper``), replayed by plain psycopg on 20 connections (2
    processes x 10 threads, connections kept across batches as a worker keeps its own),
    with no Django or Celery between statements.
  SQL statements, round trips, commits, reconnects and Celery messages per iteration come
  from that in-process capture (bench/README.md: how to count the distributed setup's).
* bytes: bytes written per iteration (growth of the bytes in use, pgstattuple's
  ``table_len - free_space``, of every relation involved: heap, TOAST and indexes; from
  before the runs are created), ours vs LangGraph's checkpoint tables, for runs of 5, 10
  and 20 iterations, by relation, and LangGraph's channel blobs before compression.
* concurrency: 200 and 1,000 concurrent runs of 3 model calls (2 tool turns, then the
  answer) against a model that takes 1 s per call; wall time against the ideal (3 s) and
  the peak of model calls in flight. A local asyncio server speaking the OpenAI
  chat-completions format if the ``openai`` provider exists, else the scripted provider
  with ``delay_ms: 1000``. Two workers, each on both queues (``--pool threads
  --concurrency 16``; model calls as AGENTMAESTRO_MODEL_CALLS says, by default ``async``:
  on each worker's event loop; BENCH_TOPOLOGY=split puts ticks on one worker and
  activities on the other). Also the workers' CPU per model call, and,
  beside each, the same calls made by the OpenAI SDK alone in one process (no engine, no
  database): what no engine can beat on this machine.

The last line printed is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import _common as common

# BENCH_ENGINE_DB / BENCH_ENGINE_REDIS_DB: another name and Redis database, so two copies
# of this benchmark (two checkouts) can run at once without sharing queues or tables.
BENCH_DATABASE = os.environ.get("BENCH_ENGINE_DB", "agentmaestro_bench_engine")
LANGGRAPH_DATABASE = BENCH_DATABASE.replace("_engine", "") + "_langgraph"
# Our own Redis database: Celery queues named "ticks" and "activities" on the default one
# may be served by the workers of a test suite running beside the benchmark.
BENCH_REDIS_DB = int(os.environ.get("BENCH_ENGINE_REDIS_DB", "13"))
CASES = ("overhead", "bytes", "concurrency")
ITERATIONS = 10
CONCURRENCY_CAP_S = float(os.environ.get("BENCH_CONCURRENCY_CAP_S", "60"))
CONCURRENT = 20
OUR_TABLES = (
    "runs_agentrun",
    "runs_agentstep",
    "runs_toolcall",
    "runs_runevent",
    "tools_toolexecution",
)
LG_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


@dataclass(frozen=True)
class Plan:
    rounds: int  # interleaved rounds of the overhead case
    single_runs: int  # sequential 1-run measurements per side per round
    batches: int  # 20-run batches per side per round
    bytes_runs: int  # runs per size in the bytes case
    concurrency: tuple[int, ...]


FULL = Plan(rounds=3, single_runs=2, batches=1, bytes_runs=30, concurrency=(200, 1000))
QUICK = Plan(rounds=2, single_runs=2, batches=1, bytes_runs=6, concurrency=(200,))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def script(tool_turns: int, delay_ms: int = 0) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "echo", "arguments": {"value": f"ping {i}"}}]}
        for i in range(tool_turns)
    ]
    turns.append({"text": "done"})
    if delay_ms:
        for turn in turns:
            turn["delay_ms"] = delay_ms
    return turns


# --- fixtures (Django, in the bench process) ----------------------------------------


@dataclass
class Fixtures:
    workspace: Any
    user: Any
    agents: dict[str, Any]


def make_fixtures() -> Fixtures:
    from django.contrib.auth import get_user_model

    from agentmaestro.tools.services import builtin_tools_install
    from agentmaestro.workspaces.services import workspace_create

    user = get_user_model().objects.create_user(username="bench", password=uuid.uuid4().hex)
    workspace = workspace_create(slug="bench", name="Bench", owner=user)
    builtin_tools_install(workspace=workspace)
    return Fixtures(workspace=workspace, user=user, agents={})


def agent_for(fx: Fixtures, slug: str, model_settings: dict[str, Any]) -> Any:
    from agentmaestro.agents.models import Agent

    if slug not in fx.agents:
        fx.agents[slug] = Agent.objects.create(
            workspace=fx.workspace,
            slug=slug,
            name=slug,
            model_settings=model_settings,
            tool_policy={"echo": {"mode": "allow"}},
            max_steps=1000,
            max_tool_calls=1000,
            max_tokens=10_000_000,
            max_wall_seconds=3600,
        )
    return fx.agents[slug]


def scripted_agent(fx: Fixtures, iterations: int, delay_ms: int = 0) -> Any:
    return agent_for(
        fx,
        f"scripted-{iterations}-{delay_ms}",
        {"provider": "scripted", "script": script(iterations, delay_ms)},
    )


def create_runs(agent: Any, user: Any, count: int) -> list[uuid.UUID]:
    from agentmaestro.runs.services.runs import run_create

    return [
        run_create(agent=agent, input={"prompt": "go"}, created_by=user).id for _ in range(count)
    ]


# --- our engine, distributed: 2 worker processes ------------------------------------


def wait_for_workers(*names: str) -> None:
    import socket

    from agentmaestro.celery import app

    common.wait_for_celery_workers(app, [f"{n}@{socket.gethostname()}" for n in names])


def start_worker(
    tmp: Path, name: str, queues: str, concurrency: int, pool: str = "threads", **env: str
) -> subprocess.Popen[bytes]:
    log_path = tmp / f"worker-{name}.log"
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentmaestro.cli",
                "worker",
                "--queues",
                queues,
                "--pool",
                pool,
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "WARNING",
            ],
            cwd=common.ROOT,
            # Deployed as docs/engine.md recommends: a connection pool per worker, so
            # releasing the connection around each activity's I/O does not reconnect.
            env={
                **os.environ,
                # (Not under prefork: Celery closes a child's pool after each task.)
                # Above Celery's threads and the executor's 4 engine threads together
                # (docs/engine.md, "Running it"), within PostgreSQL's 100 connections.
                "AGENTMAESTRO_DB_POOL_SIZE": "0"
                if pool == "prefork"
                else str(min(concurrency + 8, 24)),
                **env,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def plain(autocommit: bool = True, url: str | None = None) -> Any:
    import psycopg

    return psycopg.connect(url or os.environ["DATABASE_URL"], autocommit=autocommit)


class Poller:
    """Waits for runs to end, with a plain connection (its queries are counted).

    The end of a batch is the latest ``finished_at`` among its runs (stamped by the
    worker that finished each one, on this machine's clock), not the moment a poll
    noticed: so polling can be gentle where it is costly. One poll of 1,000 runs by id
    costs PostgreSQL a few ms; every 5 ms, that took about a quarter of this 2-core
    machine away from the engine under measurement.
    """

    def __init__(self) -> None:
        self.conn = plain()
        self.queries = 0

    def wait(self, run_ids: Sequence[uuid.UUID], timeout: float, interval: float) -> float:
        """The wall-clock time (``time.time()``) at which the last of ``run_ids`` ended."""
        deadline = time.monotonic() + timeout
        ids = list(run_ids)
        while True:
            self.queries += 1
            row = self.conn.execute(
                "SELECT count(*) FILTER (WHERE status IN ('COMPLETED','FAILED','CANCELLED')),"
                " count(*) FILTER (WHERE status <> 'COMPLETED' AND status IN"
                " ('FAILED','CANCELLED')), max(finished_at)"
                " FROM runs_agentrun WHERE id = ANY(%s)",
                (ids,),
            ).fetchone()
            if row[0] == len(ids):
                if row[1]:
                    raise RuntimeError(f"{row[1]} runs did not complete")
                return float(row[2].timestamp())
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(ids) - row[0]} of {len(ids)} runs unfinished")
            time.sleep(interval)


def poll_interval(runs: int) -> float:
    """Often enough to notice the end at once, gently enough to cost the engine nothing."""
    if runs == 1:
        return 0.002
    return 0.005 if runs <= CONCURRENT else 0.05


def start_and_wait(run_ids: Sequence[uuid.UUID], poller: Poller, timeout: float = 120) -> float:
    """Enqueue the runs' first ticks; seconds from the first enqueue to the last run's end."""
    from agentmaestro.runs import dispatch

    started = time.time()
    for run_id in run_ids:
        dispatch.enqueue_tick(run_id)
    return poller.wait(run_ids, timeout, poll_interval(len(run_ids))) - started


def iteration_ms(run_ids: Sequence[uuid.UUID]) -> list[float]:
    """Per-iteration times: gaps between a run's successive MODEL_CALL steps' creation."""
    from agentmaestro.runs.models import AgentStep

    out: list[float] = []
    for run_id in run_ids:
        times = list(
            AgentStep.objects.filter(run_id=run_id, kind="MODEL_CALL")
            .order_by("index")
            .values_list("created_at", flat=True)
        )
        out += [(b - a).total_seconds() * 1000 for a, b in pairwise(times)]
    return out


# --- in-process capture: statements, round trips, commits, messages -----------------


@dataclass
class Capture:
    ops: list[tuple[Any, ...]]  # ("BEGIN",) ("COMMIT",) ("SQL", sql, params, autocommit)
    messages: list[str]
    reconnects: int
    step_marks: list[int]  # len(ops) before each step's write (runs/engine/store/)


def run_in_process(run_id: uuid.UUID) -> Capture:
    """Drive one run with every Celery task executed here, recording its SQL."""
    from django.db import connection as default_connection
    from django.db.backends.signals import connection_created

    from agentmaestro.runs import dispatch, tasks

    connection: Any = default_connection

    queue: deque[tuple[Callable[..., Any], Any]] = deque()
    capture = Capture(ops=[], messages=[], reconnects=0, step_marks=[])
    state = {"tx": False}

    def enqueue_tick(rid: Any) -> None:
        capture.messages.append("tick")
        queue.append((tasks.run_tick, str(rid)))

    def start_activities(model_steps: Any, tool_calls: Any) -> None:
        for step_id in model_steps:
            capture.messages.append("model_call")
            queue.append((tasks.model_call, step_id))
        for call_id in tool_calls:
            capture.messages.append("tool_call")
            queue.append((tasks.tool_call, str(call_id)))

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        autocommit = connection.get_autocommit()
        if not autocommit and not state["tx"]:
            capture.ops.append(("BEGIN",))
            state["tx"] = True
        if sql.startswith("WITH bump AS"):
            # Every step ends with its one write; under eager continuation each
            # iteration (a model turn and its tool call) is one step.
            capture.step_marks.append(len(capture.ops))
        capture.ops.append(("SQL", sql, params, autocommit))
        return execute(sql, params, many, context)

    original_commit = connection._commit

    def commit() -> None:
        if state["tx"]:
            capture.ops.append(("COMMIT",))
            state["tx"] = False
        original_commit()

    def created(sender: Any, connection: Any, **kwargs: Any) -> None:
        capture.reconnects += 1

    patched: Any = dispatch
    saved = patched.enqueue_tick, patched.start_activities
    patched.enqueue_tick, patched.start_activities = enqueue_tick, start_activities
    # The capture's own bookkeeping slows every statement; it must not push the run past
    # eager continuation's time slice, which a real worker's run of 10 iterations is not.
    patched_tasks: Any = tasks
    saved_drive = patched_tasks.drive
    patched_tasks.drive = functools.partial(saved_drive, slice_ms=60_000)
    connection._commit = commit
    connection_created.connect(created)
    try:
        with connection.execute_wrapper(wrapper):
            enqueue_tick(run_id)
            while queue:
                task, arg = queue.popleft()
                task(arg)
    finally:
        patched.enqueue_tick, patched.start_activities = saved
        patched_tasks.drive = saved_drive
        del connection._commit
        connection_created.disconnect(created)
    return capture


def _commits(op: tuple[Any, ...]) -> bool:
    """An explicit COMMIT, or a statement in autocommit that writes (an eager step's one
    statement is its own transaction)."""
    if op[0] == "COMMIT":
        return True
    return op[0] == "SQL" and op[3] and not op[1].lstrip().startswith("SELECT")


def capture_stats(capture: Capture, iterations: int) -> dict[str, float]:
    ops = capture.ops
    sql = sum(1 for op in ops if op[0] == "SQL")
    explicit = sum(1 for op in ops if op[0] in ("BEGIN", "COMMIT"))
    autocommits = sum(1 for op in ops if op[0] == "SQL" and op[3])
    # One middle iteration: from one step's write to the next one's.
    k = len(capture.step_marks) // 2
    middle = ops[capture.step_marks[k - 1] + 1 : capture.step_marks[k] + 1]
    return {
        "sql_per_iteration": round(sql / iterations, 1),
        "round_trips_per_iteration": round((sql + explicit) / iterations, 1),
        "transactions_per_iteration": round(
            (sum(1 for op in ops if op[0] == "COMMIT") + autocommits) / iterations, 1
        ),
        "commits_per_iteration": round(sum(1 for op in ops if _commits(op)) / iterations, 1),
        "reconnects_per_iteration": round(capture.reconnects / iterations, 1),
        "celery_messages_per_iteration": round(len(capture.messages) / iterations, 1),
        "middle_iteration_sql": sum(1 for op in middle if op[0] == "SQL"),
        "middle_iteration_round_trips": len(middle),
        "middle_iteration_commits": sum(1 for op in middle if _commits(op)),
    }


# --- the floor: the captured SQL, replayed by plain psycopg ---------------------------


def replay_template(capture: Capture, run_id: uuid.UUID) -> dict[str, Any]:
    """The captured statements with their run/step/tool-call identities made symbolic."""
    from psycopg.types.json import Jsonb

    from agentmaestro.runs.models import AgentStep, ToolCall

    step_ids = list(
        AgentStep.objects.filter(run_id=run_id).order_by("id").values_list("id", flat=True)
    )
    call_ids = [str(c) for c in ToolCall.objects.filter(run_id=run_id).values_list("id", flat=True)]
    step_pos = {sid: i for i, sid in enumerate(step_ids)}
    call_pos = {cid: i for i, cid in enumerate(call_ids)}
    run_s = str(run_id)

    def sym(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            if value == run_id:
                return ("run",)
            if str(value) in call_pos:
                return ("call", call_pos[str(value)])
            return ("lit", value)
        if isinstance(value, int) and not isinstance(value, bool) and value in step_pos:
            return ("step", step_pos[value])
        if isinstance(value, str) and (run_s in value or any(c in value for c in call_pos)):
            return ("str", value)
        if isinstance(value, Jsonb):
            return ("jsonb", value.dumps(value.obj) if value.dumps else json.dumps(value.obj))
        return ("lit", value)

    statements: list[tuple[Any, ...]] = []
    for op in capture.ops:
        if op[0] != "SQL":
            statements.append((op[0],))
            continue
        _, sql, params, _autocommit = op
        if params is None:
            sym_params: Any = None
        elif isinstance(params, dict):
            sym_params = {key: sym(v) for key, v in params.items()}
        else:
            sym_params = [sym(v) for v in params]
        # The ORM's INSERT returns the new step's id; the engine's step write
        # (runs/engine/store/) returns [index, id] pairs of the steps it inserted.
        inserts_step = (
            sql.lstrip().startswith('INSERT INTO "runs_agentstep"')
            or "INSERT INTO runs_agentstep" in sql
        )
        statements.append(("SQL", sql, sym_params, inserts_step))
    return {"statements": statements, "run": run_s, "calls": call_ids, "steps": len(step_ids)}


def _replay_one(conn: Any, template: dict[str, Any], run_id: str) -> None:
    from psycopg.types.json import Jsonb

    calls = {i: str(uuid.uuid4()) for i in range(len(template["calls"]))}
    steps: dict[int, int] = {}
    old_run = template["run"]

    def real(value: Any) -> Any:
        kind = value[0]
        if kind == "lit":
            return value[1]
        if kind == "run":
            return uuid.UUID(run_id)
        if kind == "call":
            return uuid.UUID(calls[value[1]])
        if kind == "step":
            return steps[value[1]]
        if kind == "str":
            text = value[1].replace(old_run, run_id)
            for i, old in enumerate(template["calls"]):
                text = text.replace(old, calls[i])
            return text
        if kind == "jsonb":
            return Jsonb(value[1], dumps=lambda s: s)
        raise AssertionError(kind)

    with conn.cursor() as cur:
        for statement in template["statements"]:
            if statement[0] == "BEGIN":
                cur.execute("BEGIN")
                continue
            if statement[0] == "COMMIT":
                cur.execute("COMMIT")
                continue
            _, sql, params, inserts_step = statement
            if params is None:
                cur.execute(sql)
            elif isinstance(params, dict):
                cur.execute(sql, {key: real(v) for key, v in params.items()})
            else:
                cur.execute(sql, [real(v) for v in params])
            if cur.description is not None:
                rows = cur.fetchall()
                if inserts_step and rows and isinstance(rows[0][-1], list):
                    for _index, step_id in sorted(rows[0][-1]):
                        steps[len(steps)] = step_id
                elif inserts_step and rows:
                    steps[len(steps)] = rows[0][0]


# --- worker processes for LangGraph and the floor (2 processes, 10 threads each) -----

_proc: dict[str, Any] = {}


def _proc_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _lg_agent() -> Any:
    if "agent" in _proc:
        return _proc["agent"]
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.prebuilt import create_react_agent
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    stamps = _proc.setdefault("stamps", {})

    class FakeToolModel(BaseChatModel):
        """One ``echo`` call per turn until the run's iterations are done, then an answer."""

        @property
        def _llm_type(self) -> str:
            return "fake-tool-model"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _generate(  # type: ignore[override]
            self, messages: Any, stop: Any = None, **kwargs: Any
        ) -> ChatResult:
            first = next(m for m in messages if isinstance(m, HumanMessage))
            want = int(str(first.content).split("=")[1])
            turn = sum(isinstance(m, AIMessage) for m in messages)
            stamps.setdefault(str(first.id), []).append(time.perf_counter())
            if turn < want:
                message = AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "echo", "args": {"value": f"ping {turn}"}, "id": f"call_{turn}"}
                    ],
                )
            else:
                message = AIMessage(content="done")
            return ChatResult(generations=[ChatGeneration(message=message)])

    @tool
    def echo(value: str) -> dict[str, Any]:
        """Return the given value unchanged."""
        return {"echo": value}

    pool = ConnectionPool(
        os.environ["LANGGRAPH_DATABASE_URL"],
        min_size=10,
        max_size=10,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=True,
    )
    saver = PostgresSaver(pool)  # type: ignore[arg-type]
    _proc["agent"] = create_react_agent(FakeToolModel(), [echo], checkpointer=saver)
    return _proc["agent"]


def _lg_run(iterations: int) -> list[float]:
    from langchain_core.messages import HumanMessage

    agent = _lg_agent()
    key = str(uuid.uuid4())
    result = agent.invoke(
        {"messages": [HumanMessage(content=f"iterations={iterations}", id=key)]},
        config={"configurable": {"thread_id": key}, "recursion_limit": 4 * iterations + 10},
        durability="sync",
    )
    assert result["messages"][-1].content == "done", result["messages"][-1]
    stamps = _proc["stamps"].pop(key)
    return [(b - a) * 1000 for a, b in pairwise(stamps)]


def lg_batch(runs: int, iterations: int) -> tuple[float, list[float]]:
    """``runs`` LangGraph runs at once in this process; (wall seconds, iteration ms)."""
    _lg_agent()
    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, runs)) as pool:
        results = list(pool.map(_lg_run, [iterations] * runs))
    wall = time.perf_counter() - started
    return wall, [ms for r in results for ms in r]


def floor_connections(count: int) -> list[Any]:
    """This process's replay connections, opened once and kept, as a worker keeps its own.

    Settings as Django's (``settings._database``): prepared after 5 executions. A fresh
    connection per batch would pay what a worker's long-lived one does not: the first
    executions of every statement parsed and planned, then custom plans before the
    generic one (measured with ``perf``: half of PostgreSQL's time in the floor was
    planning, against ~3% in the workers' backends).
    """
    import psycopg

    conns: list[Any] = _proc.setdefault("floor_conns", [])
    while len(conns) < count:
        conns.append(
            psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, prepare_threshold=5)
        )
    return conns[:count]


def floor_batch(template: dict[str, Any], run_ids: list[str]) -> float:
    """Replay the template once per run id, one connection per run, all at once."""
    conns = floor_connections(len(run_ids))
    barrier = threading.Barrier(len(run_ids))

    def one(i: int) -> None:
        barrier.wait()
        _replay_one(conns[i], template, run_ids[i])

    started = time.perf_counter()
    with ThreadPoolExecutor(len(run_ids)) as pool:
        list(pool.map(one, range(len(run_ids))))
    return time.perf_counter() - started


def split(total: int, parts: int = 2) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def lg_side(procs: ProcessPoolExecutor, runs: int, iterations: int) -> tuple[float, list[float]]:
    """LangGraph: ``runs`` runs spread over the 2 processes; (wall, iteration ms)."""
    started = time.perf_counter()
    futures = [procs.submit(lg_batch, n, iterations) for n in split(runs) if n]
    results = [f.result() for f in futures]
    wall = time.perf_counter() - started
    return wall, [ms for _, r in results for ms in r]


def floor_side(procs: ProcessPoolExecutor, template: dict[str, Any], run_ids: list[str]) -> float:
    half = split(len(run_ids))
    futures = [
        procs.submit(floor_batch, template, run_ids[: half[0]]),
        procs.submit(floor_batch, template, run_ids[half[0] :]),
    ]
    return max(f.result() for f in futures)


# --- sizes and database counters ------------------------------------------------------


def relation_bytes(url: str, tables: Sequence[str]) -> int:
    """Bytes in use in ``tables``: each one's heap, its TOAST table and TOAST index, and
    its indexes; live and dead tuples, line pointers and page headers, not free space
    (``pgstattuple``; heap pages never written, which it counts as full, are found with
    ``pageinspect``). The size of the files would not do: PostgreSQL extends a relation
    by up to 512 empty pages at once when writers wait to extend it, so the files grew by
    14 KB per iteration in one case and not at all in the next. Without those contrib
    extensions, the files' main forks."""
    return sum(relation_parts(url, tables).values())


def relation_parts(url: str, tables: Sequence[str]) -> dict[str, int]:
    """``relation_bytes`` by part: each table's heap (with its TOAST) and its indexes."""
    with plain(url=url) as conn:
        exact = conn.execute(
            "SELECT count(*) = 2 FROM pg_extension WHERE extname IN ('pgstattuple', 'pageinspect')"
        ).fetchone()
        used = (
            "(SELECT table_len - free_space FROM pgstattuple(r.oid))"
            # pgstattuple counts a heap page that was never written (a page added ahead
            # of need, all zeros) as full; it is free.
            " - CASE WHEN r.relkind = 'i' THEN 0 ELSE 8192 * (SELECT count(*)"
            "   FROM generate_series(0, pg_relation_size(r.oid) / 8192 - 1) AS b"
            "   WHERE (SELECT upper FROM page_header(get_raw_page(r.oid::regclass::text,"
            "                                                     b::int))) = 0) END"
            if exact and exact[0]
            else "pg_relation_size(r.oid, 'main')"
        )
        rows = conn.execute(
            "SELECT t.relname, r.relkind = 'i' AND r.relname NOT LIKE 'pg_toast%%',"
            f"       sum({used}) FROM pg_class t"
            " JOIN pg_class r ON r.oid = t.oid OR r.oid = t.reltoastrelid"
            "   OR r.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = t.oid"
            "                 OR indrelid = t.reltoastrelid)"
            " WHERE t.relname = ANY(%s) AND t.relkind = 'r' GROUP BY 1, 2",
            (list(tables),),
        ).fetchall()
    return {f"{name}{' indexes' if index else ''}": int(size) for name, index, size in rows}


def exact_sizes(*urls: str) -> bool:
    """Install ``pgstattuple`` and ``pageinspect`` where they can be (``relation_bytes``);
    False if they cannot."""
    import psycopg

    for url in urls:
        try:
            with plain(url=url) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
                conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        except psycopg.Error as exc:
            log(f"bytes: no pgstattuple/pageinspect ({exc}); measuring the files' sizes instead")
            return False
    return True


def lg_blob_bytes(url: str) -> int:
    """Uncompressed size of LangGraph's channel blobs (the message list, rewritten in full
    at every step); TOAST compresses them on disk, so the relation grows more slowly."""
    with plain(url=url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_blobs"
        ).fetchone()
    return int(row[0])


# --- the overhead case -------------------------------------------------------------


def overhead_phase(
    fx: Fixtures, plan: Plan, procs: ProcessPoolExecutor, results: dict[str, Any]
) -> None:
    from django.db import connection

    agent = scripted_agent(fx, ITERATIONS)
    poller = Poller()

    # 1. The in-process capture (one run, every task executed here).
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('runs_agentstep', 'id'), 5000000000)")
    warm = create_runs(agent, fx.user, 2)
    run_in_process(warm[0])  # warm imports, caches and prepared statements
    capture = run_in_process(warm[1])
    results.update(capture_stats(capture, ITERATIONS))
    template = replay_template(capture, warm[1])
    log(
        f"captured: {results['sql_per_iteration']} statements, "
        f"{results['round_trips_per_iteration']} round trips, "
        f"{results['commits_per_iteration']} commits, "
        f"{results['celery_messages_per_iteration']} Celery messages per iteration"
    )

    # Warm-up of every side: two batches, so that every connection (the workers' and
    # the floor's) has its statements prepared and planned as in the steady state.
    for _ in range(2):
        start_and_wait(create_runs(agent, fx.user, CONCURRENT), poller)
        lg_side(procs, CONCURRENT, ITERATIONS)
        floor_side(procs, template, [str(r) for r in create_runs(agent, fx.user, CONCURRENT)])

    ours_1: list[float] = []
    lg_1: list[float] = []
    ours_1_wall: list[float] = []
    lg_1_wall: list[float] = []
    ours_20: list[float] = []
    lg_20: list[float] = []
    floor_20: list[float] = []
    ours_20_iter: list[float] = []
    for r in range(plan.rounds):
        sides = ["ours", "langgraph", "floor"]
        sides = sides[r % 3 :] + sides[: r % 3]
        for side in sides:
            if side == "ours":
                for _ in range(plan.single_runs):
                    ids = create_runs(agent, fx.user, 1)
                    ours_1_wall.append(start_and_wait(ids, poller) * 1000 / ITERATIONS)
                    ours_1 += iteration_ms(ids)
                for _ in range(plan.batches):
                    ids = create_runs(agent, fx.user, CONCURRENT)
                    wall = start_and_wait(ids, poller)
                    ours_20.append(CONCURRENT * ITERATIONS / wall)
                    ours_20_iter += iteration_ms(ids)
            elif side == "langgraph":
                for _ in range(plan.single_runs):
                    wall, ms = lg_side(procs, 1, ITERATIONS)
                    lg_1_wall.append(wall * 1000 / ITERATIONS)
                    lg_1 += ms
                for _ in range(plan.batches):
                    wall, _ms = lg_side(procs, CONCURRENT, ITERATIONS)
                    lg_20.append(CONCURRENT * ITERATIONS / wall)
            else:
                for _ in range(plan.batches):
                    names = [str(i) for i in create_runs(agent, fx.user, CONCURRENT)]
                    floor_20.append(CONCURRENT * ITERATIONS / floor_side(procs, template, names))
        log(
            f"round {r + 1}/{plan.rounds}: ours {common.median(ours_1):.2f} ms/it, "
            f"{ours_20[-1]:.0f} it/s; langgraph {common.median(lg_1):.2f} ms/it, "
            f"{lg_20[-1]:.0f} it/s; floor {floor_20[-1]:.0f} it/s"
        )
    results.update(
        {
            "ms_per_iteration_p50": round(common.percentile(ours_1, 50), 3),
            "ms_per_iteration_p99": round(common.percentile(ours_1, 99), 3),
            "ms_per_iteration_wall_1": round(common.median(ours_1_wall), 3),
            "langgraph_ms_per_iteration_p50": round(common.percentile(lg_1, 50), 3),
            "langgraph_ms_per_iteration_p99": round(common.percentile(lg_1, 99), 3),
            "langgraph_ms_per_iteration_wall_1": round(common.median(lg_1_wall), 3),
            "iterations_per_s_20": round(common.median(ours_20), 1),
            "runs_per_s_20": round(common.median(ours_20) / ITERATIONS, 2),
            "ms_per_iteration_p50_20": round(common.percentile(ours_20_iter, 50), 2),
            "ms_per_iteration_p99_20": round(common.percentile(ours_20_iter, 99), 2),
            "langgraph_iterations_per_s_20": round(common.median(lg_20), 1),
            "langgraph_runs_per_s_20": round(common.median(lg_20) / ITERATIONS, 2),
            "floor_iterations_per_s_20": round(common.median(floor_20), 1),
        }
    )

    poller.conn.close()


def eager_off_phase(fx: Fixtures, plan: Plan, results: dict[str, Any]) -> None:
    """The overhead case again on workers with eager continuation off (every step's next
    activity goes through the broker), to show what it saves. Not interleaved: the
    workers must be restarted to change it."""
    agent = scripted_agent(fx, ITERATIONS)
    poller = Poller()
    start_and_wait(create_runs(agent, fx.user, CONCURRENT), poller)  # warm-up
    single: list[float] = []
    batch: list[float] = []
    for _ in range(plan.rounds * plan.single_runs):
        ids = create_runs(agent, fx.user, 1)
        start_and_wait(ids, poller)
        single += iteration_ms(ids)
    for _ in range(plan.rounds * plan.batches):
        ids = create_runs(agent, fx.user, CONCURRENT)
        batch.append(CONCURRENT * ITERATIONS / start_and_wait(ids, poller))
    results["eager_off_ms_per_iteration_p50"] = round(common.percentile(single, 50), 3)
    results["eager_off_iterations_per_s_20"] = round(common.median(batch), 1)
    log(
        f"eager off: {results['eager_off_ms_per_iteration_p50']:.2f} ms/it, "
        f"{results['eager_off_iterations_per_s_20']:.0f} it/s"
    )
    poller.conn.close()


# --- the bytes case ------------------------------------------------------------------


def bytes_phase(
    fx: Fixtures, plan: Plan, procs: ProcessPoolExecutor, results: dict[str, Any]
) -> None:
    url, lg_url = os.environ["DATABASE_URL"], os.environ["LANGGRAPH_DATABASE_URL"]
    results["bytes_exact"] = exact_sizes(url, lg_url)
    poller = Poller()
    for n in (5, 10, 20):
        agent = scripted_agent(fx, n)
        # From before the runs exist: their rows and run.created events count, as
        # LangGraph's first checkpoint of a thread does.
        before = relation_parts(url, OUR_TABLES)
        ids = create_runs(agent, fx.user, plan.bytes_runs)
        iterations = plan.bytes_runs * n
        start_and_wait(ids, poller)
        after = relation_parts(url, OUR_TABLES)
        parts = {k: (v - before.get(k, 0)) / iterations for k, v in after.items()}
        ours = sum(parts.values())
        results[f"bytes_per_iteration_{n}"] = round(ours)
        results[f"bytes_per_iteration_by_relation_{n}"] = {
            k: round(v) for k, v in sorted(parts.items()) if v
        }
        size, blobs = relation_bytes(lg_url, LG_TABLES), lg_blob_bytes(lg_url)
        lg_side(procs, plan.bytes_runs, n)
        theirs = (relation_bytes(lg_url, LG_TABLES) - size) / iterations
        raw = (lg_blob_bytes(lg_url) - blobs) / iterations
        results[f"langgraph_bytes_per_iteration_{n}"] = round(theirs)
        results[f"langgraph_blob_bytes_uncompressed_per_iteration_{n}"] = round(raw)
        log(
            f"bytes, {n} iterations: ours {ours:,.0f} B/it, langgraph {theirs:,.0f} B/it "
            f"(its channel blobs before TOAST compression: {raw:,.0f} B/it)"
        )
    results["bytes_per_iteration"] = results["bytes_per_iteration_10"]
    results["langgraph_bytes_per_iteration"] = results["langgraph_bytes_per_iteration_10"]
    poller.conn.close()


# --- the concurrency case: a 1-second model ------------------------------------------


class FakeOpenAI:
    """An OpenAI chat-completions server (asyncio, HTTP/1.1 keep-alive) answering in 1 s.

    Turn n is the number of assistant messages already in the request: turns 0 and 1 ask
    for one ``echo`` call, turn 2 answers. Streams (SSE) when asked to.
    """

    def __init__(self, latency: float = 1.0, tool_turns: int = 2) -> None:
        self.latency = latency
        self.tool_turns = tool_turns
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.port = common.free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True, name="fake-openai")

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(10)

    def reset(self) -> None:
        self.peak = self.in_flight
        self.calls = 0

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve() -> None:
            server = await asyncio.start_server(
                self._client, "127.0.0.1", self.port, backlog=4096, limit=2**20
            )
            self.ready.set()
            async with server:
                await server.serve_forever()

        self.loop.run_until_complete(serve())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = json.loads(await reader.readexactly(length)) if length else {}
                await self._answer(body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        turn = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "tool_calls"
        if turn < self.tool_turns:
            message["tool_calls"] = [
                {
                    "id": f"call_{turn}",
                    "type": "function",
                    "function": {"name": "echo", "arguments": json.dumps({"value": turn})},
                }
            ]
        else:
            message["content"] = "done"
            finish = "stop"
        usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time())}
        base["model"] = body.get("model", "fake")
        if body.get("stream"):
            delta = dict(message)
            if "tool_calls" in delta:
                delta["tool_calls"] = [{"index": 0, **c} for c in message["tool_calls"]]
            chunks = [
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                },
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                },
                {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage},
            ]
            payload = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
            payload += b"data: [DONE]\n\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
            )
        else:
            out = json.dumps(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(out)).encode() + b"\r\n\r\n" + out
            )
        await writer.drain()


def openai_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("agentmaestro.agents.providers.openai_compat") is None:
        return False
    from agentmaestro.agents.providers import _PROVIDERS

    return "openai" in _PROVIDERS


def model_steps_peak(run_ids: Sequence[uuid.UUID]) -> int:
    """Most MODEL_CALL steps open (created, not finished) at once: an upper bound on calls."""
    from agentmaestro.runs.models import AgentStep

    marks: list[tuple[Any, int]] = []
    for created, finished in AgentStep.objects.filter(
        run_id__in=list(run_ids), kind="MODEL_CALL"
    ).values_list("created_at", "finished_at"):
        marks += [(created, 1), (finished, -1)]
    marks.sort(key=lambda m: (m[0], m[1]))
    peak = now = 0
    for _, d in marks:
        now += d
        peak = max(peak, now)
    return peak


def call_timeline(run_ids: Sequence[uuid.UUID], t0: float, latency: float) -> dict[str, float]:
    """Where a concurrency batch's time goes, from its MODEL_CALL steps' timestamps.

    ``first_call_*_s``: when each run's first call was created, in seconds after the
    batch's first tick was enqueued (``t0``, wall clock): the ramp of first steps.
    ``call_overhead_*_ms``: how long each call took beyond the model's own ``latency``,
    from its step's creation to its result (hand-over, claim, conversation, queueing).
    """
    from agentmaestro.runs.models import AgentStep

    first: dict[uuid.UUID, tuple[int, float]] = {}
    extra: list[float] = []
    for run_id, index, created, finished in AgentStep.objects.filter(
        run_id__in=list(run_ids), kind="MODEL_CALL"
    ).values_list("run_id", "index", "created_at", "finished_at"):
        if run_id not in first or index < first[run_id][0]:
            first[run_id] = (index, created.timestamp())
        if finished is not None:
            extra.append((finished - created).total_seconds() - latency)
    starts = [created - t0 for _, created in first.values()]
    if not starts or not extra:
        return {}
    return {
        "first_call_p50_s": round(common.median(starts), 3),
        "first_call_max_s": round(max(starts), 3),
        "call_overhead_p50_ms": round(1000 * common.percentile(extra, 50), 1),
        "call_overhead_p90_ms": round(1000 * common.percentile(extra, 90), 1),
    }


def sdk_alone(port: int, runs: int) -> tuple[float, float]:
    """The concurrency case with no engine and no database: ``runs`` runs of 3 model calls
    made straight through the OpenAI SDK, all at once, in this one process, as the
    activities worker makes them (``AsyncOpenAI`` on aiohttp, streamed, the provider's
    own ``_post_chat``). Returns (wall seconds, CPU seconds of this process).

    What no engine can beat on this machine: the SDK's own CPU per call decides how many
    calls one process keeps in flight.
    """
    import openai

    from agentmaestro.agents.providers.openai_compat import _post_chat

    tools = [
        {
            "type": "function",
            "function": {
                "name": "echo",
                "description": "Echo",
                "parameters": {"type": "object", "properties": {"value": {}}},
            },
        }
    ]

    async def main() -> float:
        client = openai.AsyncOpenAI(
            api_key="bench-not-a-key",
            base_url=f"http://127.0.0.1:{port}/v1",
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )

        async def one_run() -> None:
            messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
            for _ in range(3):
                body = {
                    "model": "fake",
                    "messages": messages,
                    "tools": tools,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                stream = await _post_chat(client, body, 30.0, True)
                async with stream:
                    async for _chunk in stream:
                        pass
                messages = [*messages, {"role": "assistant", "content": "x"}]

        started = time.perf_counter()
        try:
            await asyncio.gather(*(one_run() for _ in range(runs)))
            return time.perf_counter() - started
        finally:
            await client.close()

    cpu = time.process_time()
    wall = asyncio.run(main())
    return wall, time.process_time() - cpu


def concurrency_phase(
    fx: Fixtures, plan: Plan, procs: ProcessPoolExecutor, tmp: Path, results: dict[str, Any]
) -> None:
    use_openai = openai_available()
    server = None
    if use_openai:
        server = FakeOpenAI()
        server.start()
        agent = agent_for(
            fx,
            "openai-1s",
            {
                "provider": "openai",
                "base_url": f"http://127.0.0.1:{server.port}/v1",
                "model": "fake",
            },
        )
    else:
        agent = scripted_agent(fx, 2, delay_ms=1000)
    results["concurrency_provider"] = "openai" if use_openai else "scripted(delay_ms=1000)"
    # The activities worker's way of making model calls (`agentmaestro worker
    # --model-calls`): AGENTMAESTRO_MODEL_CALLS, here "async" unless it says "threads".
    model_calls = os.environ.get("AGENTMAESTRO_MODEL_CALLS", "async")
    results["concurrency_model_calls"] = model_calls
    env = {"OPENAI_API_KEY": "bench-not-a-key", "AGENTMAESTRO_MODEL_CALLS": model_calls}
    if server:
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{server.port}/v1"
    # How the 2 cores are used (docs/engine.md, "Running it"): by default one worker per
    # core, each on both queues, so model calls and first steps are spread over two
    # processes (two GILs). BENCH_TOPOLOGY=split: ticks on one worker, activities on the
    # other (BENCH_ACTIVITY_POOL=prefork with BENCH_ACTIVITY_THREADS=2: two processes,
    # each with its own executor). Measured 2026-12-02, the two run alternately (seven
    # runs): 200 runs 1.38-1.52x the ideal against split's 1.65-1.82x; 1,000 runs
    # 4.9-5.5x against 6.2-7.3x.
    topology = os.environ.get("BENCH_TOPOLOGY", "symmetric")
    results["concurrency_topology"] = topology
    if topology == "symmetric":
        threads = int(os.environ.get("BENCH_ACTIVITY_THREADS", "16"))
        names = ("w1", "w2")
        workers = [start_worker(tmp, name, "ticks,activities", threads, **env) for name in names]
    elif topology == "split":
        threads = int(os.environ.get("BENCH_ACTIVITY_THREADS", "1000"))
        names = ("ticks", "activities")
        workers = [
            start_worker(tmp, "ticks", "ticks", 8, **env),
            start_worker(
                tmp,
                "activities",
                "activities",
                threads,
                pool=os.environ.get("BENCH_ACTIVITY_POOL", "threads"),
                **env,
            ),
        ]
    else:
        raise SystemExit(f"BENCH_TOPOLOGY={topology!r}: expected symmetric or split")
    poller = Poller()
    try:
        wait_for_workers(*names)
        start_and_wait(create_runs(agent, fx.user, 5), poller, timeout=60)  # warm-up
        for n in plan.concurrency:
            ids = create_runs(agent, fx.user, n)
            if server:
                # The same calls with no engine: the SDK alone, in one process.
                server.reset()
                sdk_wall, sdk_cpu = procs.submit(sdk_alone, server.port, n).result()
                results[f"sdk_alone_wall_s_{n}"] = round(sdk_wall, 2)
                results[f"sdk_alone_cpu_ms_per_call_{n}"] = round(1000 * sdk_cpu / (3 * n), 2)
                log(
                    f"concurrency {n}, the OpenAI SDK alone: {sdk_wall:.2f} s, peak in flight "
                    f"{server.peak}, {1000 * sdk_cpu / (3 * n):.1f} ms CPU per call"
                )
                server.reset()
            cpu_before = [common.process_cpu_seconds(w.pid) for w in workers]
            # Capped, to keep the benchmark's length bounded: past the cap the figure is a
            # lower bound and the result says so (wall_timed_out_N, runs_completed_N).
            cap = CONCURRENCY_CAP_S
            t0 = time.time()
            try:
                wall = start_and_wait(ids, poller, timeout=cap)
                timed_out = False
            except RuntimeError as exc:
                log(f"concurrency {n}: {exc} after {cap:.0f} s (cap)")
                wall, timed_out = float(cap), True
            cpu = [
                common.process_cpu_seconds(w.pid) - before
                for w, before in zip(workers, cpu_before, strict=True)
            ]
            peak = server.peak if server else model_steps_peak(ids)
            with plain() as conn:
                done = conn.execute(
                    "SELECT count(*) FROM runs_agentrun"
                    " WHERE id = ANY(%s) AND status = 'COMPLETED'",
                    (list(ids),),
                ).fetchone()[0]
            results[f"wall_s_{n}"] = round(wall, 2)
            results[f"wall_over_ideal_{n}"] = round(wall / 3.0, 2)
            results[f"wall_timed_out_{n}"] = timed_out
            results[f"runs_completed_{n}"] = done
            results[f"peak_model_calls_in_flight_{n}"] = peak
            # Workers' CPU per model call (3 per run): what decides how many calls the
            # workers keep moving (docs/engine.md, "Model calls in a worker"). Main
            # processes only: not prefork children.
            per_call = 1000 * sum(cpu) / (3 * n)
            results[f"workers_cpu_ms_per_call_{n}"] = round(per_call, 2)
            timeline = call_timeline(ids, t0, server.latency if server else 1.0)
            results.update({f"{key}_{n}": value for key, value in timeline.items()})
            log(
                f"concurrency {n}: {'>= ' if timed_out else ''}{wall:.2f} s (ideal 3 s), "
                f"{done}/{n} completed, peak in flight {peak}, workers "
                f"{per_call:.1f} ms CPU per model call"
            )
            if timeline:
                log(
                    f"concurrency {n}: first calls created {timeline['first_call_p50_s']:.2f} s "
                    f"(p50) to {timeline['first_call_max_s']:.2f} s after the start; each call "
                    f"{timeline['call_overhead_p50_ms']:.0f} ms (p50), "
                    f"{timeline['call_overhead_p90_ms']:.0f} ms (p90) beyond the model's 1 s"
                )
            if timed_out:
                break
    finally:
        poller.conn.close()
        for worker in workers:
            common.stop_process(worker)
    tracebacks = 0
    for name in names:
        errors = (tmp / f"worker-{name}.log").read_text(errors="replace")
        tracebacks += errors.count("Traceback")
        if errors.count("Traceback"):
            log(f"worker {name} log tail:\n" + "\n".join(errors.splitlines()[-15:]))
    results["worker_errors"] = tracebacks


# --- report ----------------------------------------------------------------------------


def report(results: dict[str, Any]) -> list[common.Row]:
    rows: list[common.Row] = []

    def row(label: str, ours: str, ref: str | None, unit: str, kind: Any, limit: Any) -> None:
        if ours in results and results[ours] is not None:
            floor = results.get(ref) if ref else None
            rows.append(common.Row(label, results[ours], floor, unit, kind, limit))

    row(
        "ms/iteration p50, 1 run (vs LangGraph)",
        "ms_per_iteration_p50",
        "langgraph_ms_per_iteration_p50",
        "ms",
        "max",
        0.2,
    )
    row(
        "ms/iteration p99, 1 run (vs LangGraph)",
        "ms_per_iteration_p99",
        "langgraph_ms_per_iteration_p99",
        "ms",
        None,
        None,
    )
    row(
        "iterations/s, 20 runs (vs LangGraph)",
        "iterations_per_s_20",
        "langgraph_iterations_per_s_20",
        "it/s",
        "min",
        8,
    )
    row(
        "iterations/s, 20 runs (vs SQL floor)",
        "iterations_per_s_20",
        "floor_iterations_per_s_20",
        "it/s",
        "min",
        0.6,
    )
    row(
        "ms/iteration p50, 1 run, eager continuation off",
        "eager_off_ms_per_iteration_p50",
        "langgraph_ms_per_iteration_p50",
        "ms",
        None,
        None,
    )
    row(
        "iterations/s, 20 runs, eager continuation off",
        "eager_off_iterations_per_s_20",
        "langgraph_iterations_per_s_20",
        "it/s",
        None,
        None,
    )
    row(
        "runs/s, 20 runs (vs LangGraph)",
        "runs_per_s_20",
        "langgraph_runs_per_s_20",
        "runs/s",
        None,
        None,
    )
    for n in (5, 10, 20):
        row(
            f"bytes/iteration, runs of {n} (vs LangGraph)",
            f"bytes_per_iteration_{n}",
            f"langgraph_bytes_per_iteration_{n}",
            "B",
            "max" if n == 10 else None,
            0.2 if n == 10 else None,
        )
    for n in (200, 1000):
        if f"wall_s_{n}" in results:
            cut = " (capped: lower bound)" if results.get(f"wall_timed_out_{n}") else ""
            rows.append(
                common.Row(
                    f"wall, {n} runs x 3 calls of 1 s (vs ideal){cut}",
                    results[f"wall_s_{n}"],
                    3.0,
                    "s",
                    "max",
                    1.5 if n == 200 else 2.0,
                )
            )
        if f"sdk_alone_wall_s_{n}" in results:
            rows.append(
                common.Row(
                    f"wall, {n} runs x 3 calls, the OpenAI SDK alone (vs ideal)",
                    results[f"sdk_alone_wall_s_{n}"],
                    3.0,
                    "s",
                    None,
                    None,
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~1.5 minute smoke run")
    parser.add_argument(
        "--only", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}"
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    cases = {c.strip() for c in args.only.split(",") if c.strip()}
    if not cases <= set(CASES):
        parser.error(f"--only takes {','.join(CASES)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    database_url, redis_url = common.prepare_environment(BENCH_DATABASE)
    redis_url = os.environ["REDIS_URL"] = common.with_redis_db(redis_url, BENCH_REDIS_DB)
    lg_url = common.with_database_name(database_url, LANGGRAPH_DATABASE)
    os.environ["LANGGRAPH_DATABASE_URL"] = lg_url
    common.check_services(database_url, redis_url)
    started = time.monotonic()
    common.recreate_database(database_url)
    common.recreate_database(lg_url)
    common.setup_django(migrate=True)
    import agentmaestro.celery  # noqa: F401  (configures the Celery app this process sends with)

    fx = make_fixtures()
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(lg_url) as saver:
        saver.setup()
    log(f"databases {database_url} and {LANGGRAPH_DATABASE} ready, redis {redis_url}")

    results: dict[str, Any] = {"quick": args.quick}
    import multiprocessing

    procs = ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("spawn"), initializer=_proc_init
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp_name:
            # BENCH_LOG_DIR keeps the workers' logs.
            tmp = Path(os.environ.get("BENCH_LOG_DIR") or tmp_name)
            tmp.mkdir(parents=True, exist_ok=True)
            if cases & {"overhead", "bytes"}:
                workers = [start_worker(tmp, f"w{i}", "ticks,activities", 10) for i in (1, 2)]
                try:
                    wait_for_workers("w1", "w2")
                    if "overhead" in cases:
                        overhead_phase(fx, plan, procs, results)
                    if "bytes" in cases:
                        bytes_phase(fx, plan, procs, results)
                finally:
                    for worker in workers:
                        common.stop_process(worker)
                if "overhead" in cases:
                    off = {"AGENTMAESTRO_EAGER_SLICE_MS": "0"}
                    workers = [
                        start_worker(tmp, f"off{i}", "ticks,activities", 10, **off) for i in (1, 2)
                    ]
                    try:
                        wait_for_workers("off1", "off2")
                        eager_off_phase(fx, plan, results)
                    finally:
                        for worker in workers:
                            common.stop_process(worker)
            if "concurrency" in cases:
                concurrency_phase(fx, plan, procs, tmp, results)
    finally:
        procs.shutdown(wait=True, cancel_futures=True)

    rows = report(results)
    common.finish(rows, results, started)


if __name__ == "__main__":
    main()
