"""Benchmark of the event path: appending, live delivery to WebSockets, catch-up.

    ./dev bench events            # full run, ~2-3 minutes
    ./dev bench events --quick    # smoke run, ~30-40 seconds

Every figure is measured beside a floor doing the same work with the bare tools, in
the same run, in alternating rounds (ours, floor, ours, floor, ...), and compared as a
ratio of medians, because the machine is shared and noisy (bench/README.md):

* append throughput: ``append_event``/``append_events`` on PostgreSQL vs the same
  transaction in plain psycopg, 1 writer and 8 writers on 8 runs, 1 and 10 events per
  commit (target: ours >= 0.5x the plain rate);
* commit-to-client latency: the time from the writer's commit returning to each real
  WebSocket client (uvicorn web process, Redis channel layer) receiving that ``seq``,
  with 1 and 100 clients, vs a plain Redis PUBLISH -> subscriber (target: p99 at 100
  sockets <= 25x the plain p99); the 100-socket case again on the core channel layer;
* catch-up: a client connecting with ``since_seq=0`` to a run of 10,000 events until
  the 10,000th frame, vs a plain psycopg read of the same rows (target: <= 10x).

The last line printed is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common as common

BENCH_DATABASE = "agentmaestro_bench"
NOTE = "run.note"
# A realistic small event (~200 bytes of JSON), valid against the run.note contract.
PAYLOAD: dict[str, Any] = {
    "message": "benchmark note: " + "the quick brown fox jumps over the lazy dog " * 4,
    "source": "bench",
}
WRITERS = 8
CLIENTS = 100
CASES = ("append", "latency", "catchup", "core")


@dataclass(frozen=True)
class Plan:
    throughput_rounds: int  # rounds per side (ours / plain) of each throughput case
    throughput_seconds: float  # length of one throughput round
    latency_rounds: int  # rounds per side of each latency case
    latency_events_1: int  # events per round, 1 client
    latency_events_100: int  # events per round, 100 clients
    latency_interval_1: float  # seconds between events, 1 client
    latency_interval_100: float  # seconds between events, 100 clients
    catch_up_rounds: int
    warm_seconds: float  # unrecorded warm-up before each throughput case
    catch_up_events: int = 10_000


FULL = Plan(
    throughput_rounds=5,
    throughput_seconds=0.8,
    latency_rounds=3,
    latency_events_1=100,
    latency_events_100=60,
    latency_interval_1=0.02,
    latency_interval_100=0.05,
    catch_up_rounds=5,
    warm_seconds=0.2,
)
QUICK = Plan(
    throughput_rounds=2,
    throughput_seconds=0.25,
    latency_rounds=1,
    latency_events_1=40,
    latency_events_100=25,
    latency_interval_1=0.02,
    latency_interval_100=0.05,
    catch_up_rounds=2,
    warm_seconds=0.1,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))


# --- writers: ours and the plain-psycopg floor ---------------------------------------
# These functions run in writer threads (or processes, --writers processes): each worker
# has its own Django connection and its own psycopg connection.

_local = threading.local()


def _worker_init() -> None:
    """Initializer of a writer process: the parent's environment, Django set up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    common.setup_django(migrate=False)


def _plain_connection(autocommit: bool = False) -> Any:
    import psycopg

    attr = "read_conn" if autocommit else "write_conn"
    conn = getattr(_local, attr, None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=autocommit)
        setattr(_local, attr, conn)
    return conn


def append_ours(run_id: uuid.UUID, k: int) -> None:
    from agentmaestro.runs.events.store import append_event, append_events
    from agentmaestro.runs.events.types import NewEvent

    if k == 1:
        append_event(run_id, NOTE, PAYLOAD)
    else:
        append_events(run_id, [NewEvent(NOTE, PAYLOAD)] * k)


_PLAIN_UPDATE = "UPDATE runs_agentrun SET last_seq = last_seq + %s WHERE id = %s RETURNING last_seq"
_PLAIN_INSERT = (
    "INSERT INTO runs_runevent (run_id, seq, type, version, payload, created_at) VALUES "
)


def append_plain(run_id: uuid.UUID, k: int) -> None:
    """The same work, written the natural way in plain psycopg.

    BEGIN; UPDATE ... RETURNING; one multi-row INSERT; COMMIT.
    """
    from psycopg.types.json import Json

    conn = _plain_connection()
    with conn.cursor() as cur:
        cur.execute(_PLAIN_UPDATE, (k, run_id))
        last_seq = cur.fetchone()[0]
        now = datetime.now(UTC)
        params: list[Any] = []
        for i in range(k):
            params += [run_id, last_seq - k + 1 + i, NOTE, 1, Json(PAYLOAD), now]
        cur.execute(_PLAIN_INSERT + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * k), params)
    conn.commit()


def _drop_all(group: str, message: dict[str, Any]) -> bool:
    return True


def writer_round(
    side: str, run_id: uuid.UUID, k: int, start_at: float, seconds: float
) -> tuple[int, float, str]:
    """Append ``k`` events per commit for ``seconds``; return (events, elapsed, worker).

    ``side`` is "ours", "plain", or "ours_nobroadcast": ours with the after-commit
    broadcast dropped before it reaches the broadcaster (to show what it costs).
    """
    from agentmaestro.runs.events.broadcast import broadcaster

    append = append_plain if side == "plain" else append_ours
    if side == "ours_nobroadcast":
        broadcaster.drop_hook = _drop_all
    try:
        sleep_until(start_at)
        events = 0
        started = now = time.monotonic()
        end = started + seconds
        while now < end:
            append(run_id, k)
            events += k
            now = time.monotonic()
    finally:
        broadcaster.drop_hook = None
    return events, now - started, f"{os.getpid()}/{threading.get_ident()}"


def _hold(seconds: float) -> str:
    time.sleep(seconds)
    return f"{os.getpid()}/{threading.get_ident()}"


class WriterPool:
    """``size`` long-lived writers; a round gives each its own run, all starting at once."""

    def __init__(self, kind: str, size: int) -> None:
        self.kind = kind
        self.size = size
        self.executor: Executor
        if kind == "processes":
            self.executor = ProcessPoolExecutor(
                size, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
            )
        else:
            self.executor = ThreadPoolExecutor(size, thread_name_prefix="bench-writer")

    def start(self) -> None:
        """Start every worker (and its Django set-up) before anything is timed."""
        deadline = time.monotonic() + 120
        seen: set[str] = set()
        while len(seen) < self.size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {self.size} writers started")
            futures = [self.executor.submit(_hold, 0.3) for _ in range(self.size)]
            seen |= {f.result(timeout=120) for f in futures}

    def round(self, side: str, run_ids: Sequence[uuid.UUID], k: int, seconds: float) -> float:
        """Events per second of all writers together in one round."""
        start_at = time.monotonic() + 0.25
        futures = [
            self.executor.submit(writer_round, side, run_id, k, start_at, seconds)
            for run_id in run_ids
        ]
        results = [f.result(timeout=seconds + 120) for f in futures]
        if len({worker for _, _, worker in results}) != len(run_ids):
            raise RuntimeError("two writers of one round shared a worker; the round is invalid")
        return sum(events / elapsed for events, elapsed, _ in results)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


# --- fixtures ------------------------------------------------------------------------


@dataclass
class Fixtures:
    token: str
    writer_runs: list[uuid.UUID]
    stream_run: uuid.UUID
    catch_up_run: uuid.UUID


def make_fixtures(catch_up_events: int) -> Fixtures:
    from django.contrib.auth import get_user_model

    from agentmaestro.accounts.services import api_token_create
    from agentmaestro.agents.models import Agent
    from agentmaestro.runs.events.store import append_events
    from agentmaestro.runs.events.types import NewEvent
    from agentmaestro.runs.services.runs import run_create
    from agentmaestro.workspaces.services import workspace_create

    user = get_user_model().objects.create_user(username="bench", password=uuid.uuid4().hex)
    workspace = workspace_create(slug="bench", name="Bench", owner=user)
    agent = Agent.objects.create(workspace=workspace, slug="bench", name="Bench")
    _, token = api_token_create(user=user, name="bench")

    def new_run() -> uuid.UUID:
        return run_create(agent=agent, input={"prompt": "bench"}, created_by=user).id

    writer_runs = [new_run() for _ in range(WRITERS)]
    stream_run = new_run()
    catch_up_run = new_run()  # run.created is seq 1; fill up to catch_up_events
    remaining = catch_up_events - 1
    while remaining:
        batch = min(remaining, 1000)
        append_events(catch_up_run, [NewEvent(NOTE, PAYLOAD)] * batch)
        remaining -= batch
    return Fixtures(token, writer_runs, stream_run, catch_up_run)


# --- throughput --------------------------------------------------------------------


def throughput_phase(pool: WriterPool, fx: Fixtures, plan: Plan, results: dict[str, Any]) -> None:
    # Warm every worker up once, all at the same time (so each gets exactly one task): a
    # process's first ~20 appends are slow (5-70 ms each) while its broadcaster thread
    # starts its loop and imports and connects the channel layer — a once-per-process cost
    # that would otherwise land in whichever rounds first use a fresh worker.
    pool.round("ours", fx.writer_runs, 1, 2 * plan.warm_seconds)
    pool.round("plain", fx.writer_runs, 1, plan.warm_seconds)
    for writers in (1, WRITERS):
        runs = fx.writer_runs[:writers]
        for k in (1, 10):
            # With k=1 also ours without the broadcast, to show where the time goes.
            sides = ["ours", "plain"] + (["ours_nobroadcast"] if k == 1 else [])
            for side in sides:
                pool.round(side, runs, k, plan.warm_seconds)  # warm-up, not recorded
            rates: dict[str, list[float]] = {side: [] for side in sides}
            for _ in range(plan.throughput_rounds):
                for side in sides:
                    rates[side].append(pool.round(side, runs, k, plan.throughput_seconds))
            ours, plain = common.median(rates["ours"]), common.median(rates["plain"])
            suffix = f"{writers}w" + ("" if k == 1 else f"_k{k}")
            results[f"append_events_per_s_{suffix}"] = round(ours)
            results[f"raw_events_per_s_{suffix}"] = round(plain)
            results[f"append_ratio_{suffix}"] = round(ours / plain, 3)
            if "ours_nobroadcast" in rates:
                results[f"append_nobroadcast_events_per_s_{suffix}"] = round(
                    common.median(rates["ours_nobroadcast"])
                )
            log(
                f"append {writers}w k={k}: "
                + ", ".join(f"{side} {[round(x) for x in rates[side]]}" for side in sides)
                + " ev/s"
            )


# --- latency -------------------------------------------------------------------------


class Stamp:
    """An on_commit callback noting when the commit returned."""

    at: float = 0.0

    def __call__(self) -> None:
        self.at = time.monotonic()


def write_paced(run_id: uuid.UUID, count: int, interval: float) -> dict[int, float]:
    """Append ``count`` events, one per transaction, every ``interval`` s: {seq: commit time}."""
    from django.db import transaction

    from agentmaestro.runs.events.store import append_event

    marks: dict[int, float] = {}
    next_at = time.monotonic()
    for _ in range(count):
        next_at += interval
        sleep_until(next_at)
        stamp = Stamp()
        with transaction.atomic():
            # Registered before the append's own hook, so it runs first: right after COMMIT
            # returned, before the broadcast is handed to the broadcaster's loop.
            transaction.on_commit(stamp)
            event = append_event(run_id, NOTE, PAYLOAD)
        marks[event.seq] = stamp.at
    return marks


_publisher: Any = None


def publish_paced(
    redis_url: str, channel: str, first_id: int, count: int, interval: float, body: str
) -> dict[int, float]:
    """The floor: plain PUBLISH of a frame-sized message, paced like ``write_paced``."""
    global _publisher
    import redis

    if _publisher is None:
        _publisher = redis.Redis.from_url(redis_url)
    marks: dict[int, float] = {}
    next_at = time.monotonic()
    for i in range(first_id, first_id + count):
        next_at += interval
        sleep_until(next_at)
        data = f"{i:010d}{body}"
        marks[i] = time.monotonic()
        _publisher.publish(channel, data)
    return marks


class Receiver:
    """Notes when each message (by seq or id) arrived; can wait for one of them."""

    def __init__(self) -> None:
        self.received: dict[int, float] = {}
        self.task: asyncio.Task[None] | None = None
        self._awaited: int | None = None
        self._arrived = asyncio.Event()

    def note(self, key: int, at: float) -> None:
        self.received[key] = at
        if key == self._awaited:
            self._arrived.set()

    async def wait_for(self, key: int, deadline: float) -> None:
        self._awaited = key
        self._arrived.clear()
        if key not in self.received:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(deadline - time.monotonic(), 0))
        self._awaited = None


class StreamClient(Receiver):
    """A real WebSocket client on ``/ws/runs/<id>/``, noting when each seq arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.ws: Any = None

    async def open(self, url: str, token: str) -> None:
        import websockets

        self.ws = await websockets.connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=60,
            max_size=None,
        )
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import websockets

        note = self.note
        try:
            async for message in self.ws:
                at = time.monotonic()
                seq = json.loads(message).get("seq")
                if seq is not None:
                    note(seq, at)
        except websockets.ConnectionClosed:
            pass

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            await self.task


class RawSubscriber(Receiver):
    """The floor's receiving end: a redis-py asyncio subscriber."""

    def __init__(self) -> None:
        super().__init__()
        self.client: Any = None
        self.pubsub: Any = None

    async def open(self, redis_url: str, channel: str) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(channel)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        note = self.note
        async for message in self.pubsub.listen():
            at = time.monotonic()
            if message["type"] == "message":
                note(int(message["data"][:10]), at)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        if self.pubsub is not None:
            await self.pubsub.aclose()
        if self.client is not None:
            await self.client.aclose()


async def open_all(openers: Sequence[Callable[[], Any]], parallel: int = 10) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(opener: Callable[[], Any]) -> None:
        async with gate:
            await opener()

    await asyncio.gather(*(one(opener) for opener in openers))


async def latencies(
    marks: dict[int, float], receivers: Sequence[Receiver], wait_s: float = 15.0
) -> tuple[list[float], int]:
    """Milliseconds from each mark to each receiver's receipt; and how many never came."""
    last = max(marks)
    deadline = time.monotonic() + wait_s
    for receiver in receivers:  # delivery is in order: the last one comes last
        await receiver.wait_for(last, deadline)
    values: list[float] = []
    missing = 0
    for receiver in receivers:
        for key, sent in marks.items():
            got = receiver.received.pop(key, None)
            if got is None:
                missing += 1
            else:
                values.append((got - sent) * 1000)
    return values, missing


@dataclass
class LatencySide:
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    missing: int = 0

    def add(self, values: list[float], missing: int) -> None:
        self.p50.append(common.percentile(values, 50))
        self.p99.append(common.percentile(values, 99))
        self.missing += missing

    def record(self, results: dict[str, Any], p50_key: str, p99_key: str) -> None:
        results[p50_key] = round(common.median(self.p50), 3)
        results[p99_key] = round(common.median(self.p99), 3)


class LatencyBench:
    """The writer thread, the clients and the floor's subscribers, in one process."""

    def __init__(
        self, server: common.WebServer, redis_url: str, fx: Fixtures, writer: Executor
    ) -> None:
        self.server_pid = server.process.pid
        self.ws_url = server.ws_url
        self.redis_url = redis_url
        self.fx = fx
        self.writer = writer
        self.clients: list[StreamClient] = []
        self.server_cpu_ms: list[float] = []
        self.bench_cpu_ms: list[float] = []
        # The floor's subscribers, by how many listen on one channel (1 or 100).
        self.subscribers: dict[int, list[RawSubscriber]] = {}
        self.channel_tag = uuid.uuid4().hex
        self.next_raw_id = 0
        # The floor publishes a message the size of an event frame.
        self.body = "x" * (len(json.dumps(PAYLOAD)) + 150)

    async def in_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.writer, fn, *args)

    async def add_clients(self, total: int) -> None:
        last_seq = await self.in_writer(_last_seq, self.fx.stream_run)
        url = f"{self.ws_url}/ws/runs/{self.fx.stream_run}/?since_seq={last_seq}"
        new = [StreamClient() for _ in range(total - len(self.clients))]
        self.clients += new
        await open_all([lambda c=c: c.open(url, self.fx.token) for c in new])
        await asyncio.sleep(0.5)  # let every group subscription settle

    def channel(self, subscribers: int) -> str:
        return f"bench.raw.{self.channel_tag}.{subscribers}"

    async def open_subscribers(self, total: int) -> list[RawSubscriber]:
        """``total`` subscribers on a channel of their own, opened once."""
        if total not in self.subscribers:
            new = [RawSubscriber() for _ in range(total)]
            self.subscribers[total] = new
            channel = self.channel(total)
            await open_all([lambda s=s: s.open(self.redis_url, channel) for s in new])
            await asyncio.sleep(0.2)
        return self.subscribers[total]

    async def ours(self, count: int, interval: float) -> tuple[list[float], int]:
        server_cpu = common.process_cpu_seconds(self.server_pid)
        own_cpu = time.process_time()
        marks = await self.in_writer(write_paced, self.fx.stream_run, count, interval)
        values, missing = await latencies(marks, self.clients)
        # CPU per event, to see which side a slow fan-out spends it on.
        self.server_cpu_ms.append(
            (common.process_cpu_seconds(self.server_pid) - server_cpu) / count * 1000
        )
        self.bench_cpu_ms.append((time.process_time() - own_cpu) / count * 1000)
        return values, missing

    async def floor(self, subscribers: int, count: int, interval: float) -> tuple[list[float], int]:
        listening = await self.open_subscribers(subscribers)
        first = self.next_raw_id
        self.next_raw_id += count
        marks = await self.in_writer(
            publish_paced,
            self.redis_url,
            self.channel(subscribers),
            first,
            count,
            interval,
            self.body,
        )
        return await latencies(marks, listening)

    async def close_clients(self) -> None:
        clients, self.clients = self.clients, []
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    async def close(self) -> None:
        await self.close_clients()
        subscribers = [s for group in self.subscribers.values() for s in group]
        self.subscribers = {}
        await asyncio.gather(*(s.close() for s in subscribers), return_exceptions=True)


def _last_seq(run_id: uuid.UUID) -> int:
    from agentmaestro.runs.selectors import run_last_seq

    return run_last_seq(run_id) or 0


async def latency_phase(
    bench: LatencyBench, plan: Plan, results: dict[str, Any], layer: str
) -> None:
    if layer == "pubsub":
        # 1 client.
        await bench.add_clients(1)
        await bench.ours(5, plan.latency_interval_1)  # warm-up
        await bench.floor(1, 5, plan.latency_interval_1)
        ours, floor = LatencySide(), LatencySide()
        for _ in range(plan.latency_rounds):
            ours.add(*await bench.ours(plan.latency_events_1, plan.latency_interval_1))
            floor.add(*await bench.floor(1, plan.latency_events_1, plan.latency_interval_1))
        ours.record(results, "ws_p50_ms_1", "ws_p99_ms_1")
        floor.record(results, "raw_pubsub_p50_ms_1", "raw_pubsub_p99_ms_1")
        results["ws_missing_1"] = ours.missing
        log(f"latency 1 client: ours p99 {ours.p99} ms, plain {floor.p99} ms")

    # 100 clients (the same run; the floor interleaved with 1 and with 100 subscribers).
    await bench.add_clients(CLIENTS)
    interval, count = plan.latency_interval_100, plan.latency_events_100
    await bench.ours(5, interval)  # warm-up
    bench.server_cpu_ms.clear()
    bench.bench_cpu_ms.clear()
    ours, floor1, floor100 = LatencySide(), LatencySide(), LatencySide()
    for _ in range(plan.latency_rounds):
        ours.add(*await bench.ours(count, interval))
        floor1.add(*await bench.floor(1, count, interval))
        if layer == "pubsub":
            floor100.add(*await bench.floor(CLIENTS, count, interval))
    if layer == "pubsub":
        ours.record(results, "ws_p50_ms_100", "ws_p99_ms_100")
        floor1.record(results, "raw_pubsub_p50_ms", "raw_pubsub_p99_ms")
        floor100.record(results, "raw_pubsub_p50_ms_100subs", "raw_pubsub_p99_ms_100subs")
        results["ws_missing_100"] = ours.missing
        log(
            f"latency {CLIENTS} clients: ours p99 {ours.p99} ms, plain {floor1.p99} ms, "
            f"plain x{CLIENTS} subscribers {floor100.p99} ms"
        )
    else:
        ours.record(results, f"ws_{layer}_p50_ms_100", f"ws_{layer}_p99_ms_100")
        floor1.record(results, f"raw_pubsub_p50_ms_{layer}_run", f"raw_pubsub_p99_ms_{layer}_run")
        results[f"ws_{layer}_missing_100"] = ours.missing
        log(f"latency {CLIENTS} clients, {layer} layer: ours p99 {ours.p99}, plain {floor1.p99}")
    tag = "" if layer == "pubsub" else f"_{layer}"
    results[f"ws_server_cpu_ms_per_event_100{tag}"] = round(common.median(bench.server_cpu_ms), 2)
    results[f"ws_bench_cpu_ms_per_event_100{tag}"] = round(common.median(bench.bench_cpu_ms), 2)
    log(
        f"CPU per event with {CLIENTS} clients: web process {bench.server_cpu_ms} ms, "
        f"this process (writer + clients) {bench.bench_cpu_ms} ms"
    )
    await bench.close_clients()


# --- catch-up ------------------------------------------------------------------------


async def catch_up_once(ws_url: str, fx: Fixtures, expected: int) -> float:
    """Seconds from starting the connection until the ``expected``-th event frame."""
    import websockets

    url = f"{ws_url}/ws/runs/{fx.catch_up_run}/?since_seq=0"
    started = time.monotonic()
    async with websockets.connect(
        url,
        additional_headers={"Authorization": f"Bearer {fx.token}"},
        open_timeout=60,
        max_size=None,
    ) as ws:
        frames = 0
        async for message in ws:
            frames += 1
            if frames == expected:
                elapsed = time.monotonic() - started
                last = json.loads(message)
                break
        else:
            raise RuntimeError(f"the socket closed after {frames} of {expected} frames")
    if last.get("seq") != expected:
        raise RuntimeError(f"frame {expected} carried seq {last.get('seq')}")
    return elapsed


_PLAIN_READ = (
    "SELECT seq, type, version, payload, created_at FROM runs_runevent "
    "WHERE run_id = %s ORDER BY seq"
)


def read_plain(run_id: uuid.UUID, expected: int) -> float:
    conn = _plain_connection(autocommit=True)
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.execute(_PLAIN_READ, (run_id,))
        rows = cur.fetchall()
    elapsed = time.monotonic() - started
    if len(rows) != expected:
        raise RuntimeError(f"plain read got {len(rows)} rows, expected {expected}")
    return elapsed


async def catch_up_phase(bench: LatencyBench, plan: Plan, results: dict[str, Any]) -> None:
    expected = plan.catch_up_events
    await catch_up_once(bench.ws_url, bench.fx, expected)  # warm-up
    await bench.in_writer(read_plain, bench.fx.catch_up_run, expected)
    ours: list[float] = []
    plain: list[float] = []
    for _ in range(plan.catch_up_rounds):
        ours.append(await catch_up_once(bench.ws_url, bench.fx, expected))
        plain.append(await bench.in_writer(read_plain, bench.fx.catch_up_run, expected))
    results["catchup_10000_s"] = round(common.median(ours), 4)
    results["raw_read_10000_s"] = round(common.median(plain), 4)
    log(f"catch-up: ours {[round(x, 3) for x in ours]} s, plain {[round(x, 4) for x in plain]} s")


# --- channel layers ----------------------------------------------------------------


def use_channel_layer(kind: str) -> None:
    """Switch this process's channel layer the way AGENTMAESTRO_CHANNEL_LAYER would."""
    from channels.layers import channel_layers
    from django.conf import settings

    os.environ["AGENTMAESTRO_CHANNEL_LAYER"] = kind
    spec = importlib.util.find_spec("agentmaestro.settings")
    assert spec is not None
    assert spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)  # the settings as a new process would read them
    settings.CHANNEL_LAYERS = fresh.CHANNEL_LAYERS
    channel_layers.backends = {}


async def server_phase(
    server: common.WebServer,
    redis_url: str,
    fx: Fixtures,
    writer: Executor,
    plan: Plan,
    results: dict[str, Any],
    layer: str,
    cases: set[str],
) -> None:
    bench = LatencyBench(server, redis_url, fx, writer)
    try:
        if layer == "core" or "latency" in cases:
            await latency_phase(bench, plan, results, layer)
        if layer == "pubsub" and "catchup" in cases:
            await catch_up_phase(bench, plan, results)
    finally:
        await bench.close()


# --- report --------------------------------------------------------------------------


def report(results: dict[str, Any]) -> list[common.Row]:
    r = results
    rows = []

    def row(
        label: str, ours: str, floor: str, unit: str, kind: str | None = None, limit: float = 0
    ) -> None:
        if ours in r and floor in r:
            rows.append(common.Row(label, r[ours], r[floor], unit, kind, limit if kind else None))

    for writers in (1, WRITERS):
        for k in (1, 10):
            suffix = f"{writers}w" + ("" if k == 1 else f"_k{k}")
            label = f"append, {writers} writer{'s' if writers > 1 else ''}, {k} ev/commit"
            plain = f"raw_events_per_s_{suffix}"
            row(label, f"append_events_per_s_{suffix}", plain, "ev/s", "min", 0.5)
            row(
                "  the same, broadcast dropped",
                f"append_nobroadcast_events_per_s_{suffix}",
                plain,
                "ev/s",
            )
    row("ws latency p50, 1 client", "ws_p50_ms_1", "raw_pubsub_p50_ms_1", "ms")
    row("ws latency p99, 1 client", "ws_p99_ms_1", "raw_pubsub_p99_ms_1", "ms")
    row(f"ws latency p50, {CLIENTS} clients", "ws_p50_ms_100", "raw_pubsub_p50_ms", "ms")
    row(f"ws latency p99, {CLIENTS} clients", "ws_p99_ms_100", "raw_pubsub_p99_ms", "ms", "max", 25)
    row(
        f"  the same vs {CLIENTS} plain subscribers",
        "ws_p99_ms_100",
        "raw_pubsub_p99_ms_100subs",
        "ms",
    )
    row(
        f"ws latency p50, {CLIENTS} clients, core layer",
        "ws_core_p50_ms_100",
        "raw_pubsub_p50_ms_core_run",
        "ms",
    )
    row(
        f"ws latency p99, {CLIENTS} clients, core layer",
        "ws_core_p99_ms_100",
        "raw_pubsub_p99_ms_core_run",
        "ms",
    )
    row(
        "catch-up of 10,000 events, since_seq=0",
        "catchup_10000_s",
        "raw_read_10000_s",
        "s",
        "max",
        10,
    )
    return rows


# --- main ----------------------------------------------------------------------------


@contextmanager
def writer_pool(kind: str) -> Iterator[WriterPool]:
    pool = WriterPool(kind, WRITERS)
    try:
        yield pool
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run")
    parser.add_argument(
        "--writers",
        choices=("threads", "processes"),
        default="threads",
        help="run the append writers as threads (default) or processes (bench/README.md)",
    )
    parser.add_argument(
        "--only",
        default=",".join(CASES),
        help=f"comma-separated cases to run, of {','.join(CASES)} (default: all)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    cases = {case.strip() for case in args.only.split(",") if case.strip()}
    if not cases <= set(CASES):
        parser.error(f"--only takes {','.join(CASES)}")

    # A polite SIGTERM stops the servers and writers like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    database_url, redis_url = common.prepare_environment(BENCH_DATABASE)
    os.environ["AGENTMAESTRO_CHANNEL_LAYER"] = "pubsub"
    common.check_services(database_url, redis_url)
    started = time.monotonic()
    log(f"database {database_url} (re-created), redis {redis_url}")
    common.recreate_database(database_url)
    common.setup_django(migrate=True)
    fx = make_fixtures(plan.catch_up_events if "catchup" in cases else 1)
    log(f"fixtures ready ({time.monotonic() - started:.1f} s)")

    results: dict[str, Any] = {"quick": args.quick, "writers": args.writers}
    if "append" in cases:
        with writer_pool(args.writers) as pool:
            pool.start()
            log(f"{WRITERS} writer {args.writers} ready ({time.monotonic() - started:.1f} s)")
            throughput_phase(pool, fx, plan, results)

    writer = ThreadPoolExecutor(1, thread_name_prefix="bench-writer")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
            if cases & {"latency", "catchup"}:
                with common.web_server(Path(tmp)) as server:
                    asyncio.run(
                        server_phase(server, redis_url, fx, writer, plan, results, "pubsub", cases)
                    )
            if "core" in cases:
                use_channel_layer("core")
                with common.web_server(Path(tmp), AGENTMAESTRO_CHANNEL_LAYER="core") as server:
                    asyncio.run(
                        server_phase(server, redis_url, fx, writer, plan, results, "core", cases)
                    )
    finally:
        writer.shutdown(wait=True, cancel_futures=True)

    rows = report(results)
    if "ws_p99_ms_100" in results:
        results["ws_p99_ratio_100"] = round(
            results["ws_p99_ms_100"] / results["raw_pubsub_p99_ms"], 2
        )
    if "catchup_10000_s" in results:
        results["catchup_ratio"] = round(
            results["catchup_10000_s"] / results["raw_read_10000_s"], 2
        )
    common.finish(rows, results, started)


if __name__ == "__main__":
    main()
