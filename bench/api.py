"""Benchmark of the REST API on the distributed setup, beside a floor on the same servers.

    ./dev bench api            # ~1.5 minutes
    ./dev bench api --quick    # smoke run, ~40 seconds

It starts PostgreSQL-backed ``agentmaestro web --workers 2`` (uvicorn) and one
``agentmaestro worker`` on Redis, then measures, in alternating rounds (ours, floor, ours,
floor, ...), over HTTP with keep-alive connections and a bearer token:

* run creation: ``POST /api/v1/workspaces/bench/runs/`` from 20 concurrent clients (each
  request with its own ``Idempotency-Key``; the worker executes the runs meanwhile, a
  one-turn scripted agent), p50/p99 and runs created per second;
* the floor for it: ``GET /api/v1/me/`` from 20 concurrent clients, the smallest
  authenticated endpoint (one indexed row read, for the token and its user);
* a snapshot (``GET /api/v1/runs/{id}/``) and a 500-event page
  (``GET /api/v1/runs/{id}/events/?since_seq=250&limit=500``) of a run with 1,000 events
  (a worker-executed run with 60 tool turns, topped up with notes), from one client,
  p50, beside the floor from one client.

Targets: run creation p99 <= 4x the floor's p99 (20 clients); snapshot and events page
p50 <= 3x the floor's p50 (1 client). The last line printed is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common

BENCH_DATABASE = "agentmaestro_bench_api"
# Not the tests' or the other benchmarks' Redis database: their workers must not take ours.
BENCH_REDIS_DB = 12
CLIENTS = 20
EVENTS = 1000
TOOL_TURNS = 60


@dataclass(frozen=True)
class Plan:
    rounds: int  # rounds per side (ours / floor) of each case
    concurrent_requests: int  # requests per round, over the 20 clients
    sequential_requests: int  # requests per round, one client


FULL = Plan(rounds=5, concurrent_requests=400, sequential_requests=60)
QUICK = Plan(rounds=2, concurrent_requests=200, sequential_requests=30)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- fixtures (Django, in the bench process) ----------------------------------------


@dataclass
class Fixtures:
    token: str
    quick_agent: str
    long_run_id: uuid.UUID


def make_fixtures() -> Fixtures:
    from django.contrib.auth import get_user_model

    from agentmaestro.accounts.services import api_token_create
    from agentmaestro.agents.models import Agent
    from agentmaestro.tools.services import builtin_tools_install
    from agentmaestro.workspaces.services import workspace_create

    user = get_user_model().objects.create_user(username="bench", password=uuid.uuid4().hex)
    workspace = workspace_create(slug="bench", name="Bench", owner=user)
    builtin_tools_install(workspace=workspace)
    limits = {"max_steps": 1000, "max_tool_calls": 1000, "max_wall_seconds": 3600}
    Agent.objects.create(
        workspace=workspace,
        slug="quick",
        name="quick",
        model_settings={"provider": "scripted", "script": [{"text": "done"}]},
        **limits,
    )
    turns: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "echo", "arguments": {"value": f"ping {i}"}}]}
        for i in range(TOOL_TURNS)
    ]
    long_agent = Agent.objects.create(
        workspace=workspace,
        slug="long",
        name="long",
        model_settings={"provider": "scripted", "script": [*turns, {"text": "done"}]},
        tool_policy={"echo": {"mode": "allow"}},
        **limits,
    )
    from agentmaestro.runs.services.runs import run_start

    run, _ = run_start(agent=long_agent, input={"prompt": "go"}, created_by=user)
    _, token = api_token_create(user=user, name="bench")
    return Fixtures(token=token, quick_agent="quick", long_run_id=run.id)


def finish_long_run(run_id: uuid.UUID, timeout: float = 120) -> int:
    """Wait for the worker to finish the long run, then top its log up to EVENTS events."""
    from agentmaestro.runs.events.store import append_events
    from agentmaestro.runs.events.types import NewEvent
    from agentmaestro.runs.models import AgentRun

    deadline = time.monotonic() + timeout
    while True:
        run = AgentRun.objects.get(id=run_id)
        if run.finished_at is not None:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the long run did not finish in {timeout} s ({run.status})")
        time.sleep(0.2)
    if run.status != "COMPLETED":
        raise RuntimeError(f"the long run ended {run.status}: {run.error}")
    engine_events = run.last_seq
    missing = EVENTS - engine_events
    if missing < 0:
        raise RuntimeError(f"the long run has {engine_events} events, more than {EVENTS}")
    note = NewEvent("run.note", {"message": "bench note " + "x" * 80, "source": "bench"})
    for start in range(0, missing, 200):
        append_events(run_id, [note] * min(200, missing - start))
    return engine_events


# --- processes ------------------------------------------------------------------------


def start_process(tmp: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    log_path = tmp / f"{name}.log"
    # A connection pool per process. Under ASGI every request runs in a thread of its own,
    # so persistent connections (CONN_MAX_AGE) would open one connection per request and
    # exhaust PostgreSQL's max_connections; the pool hands a few around instead.
    env = {**os.environ, "AGENTMAESTRO_DB_POOL_SIZE": "8"}
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agentmaestro.cli", *args],
            cwd=common.ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError("the web process exited early (see its log)")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {timeout} s")
        time.sleep(0.2)


# --- clients --------------------------------------------------------------------------

Request = Callable[[Any, int], Any]


class Clients:
    """CLIENTS threads, each with its own keep-alive connection, fed one round at a time."""

    def __init__(self, base_url: str, token: str, count: int = CLIENTS) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"}
        self.http = [
            httpx.Client(base_url=base_url, headers=headers, timeout=30) for _ in range(count)
        ]

    def round(self, request: Request, total: int, clients: int) -> tuple[list[float], float]:
        """``total`` requests over ``clients`` clients; (latencies in ms, wall seconds)."""
        latencies: list[float] = []
        lock = threading.Lock()
        counter = iter(range(total))
        errors: list[str] = []

        def work(http: Any) -> None:
            mine = []
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                t0 = time.perf_counter()
                response = request(http, i)
                mine.append((time.perf_counter() - t0) * 1000)
                if response.status_code >= 300:
                    errors.append(f"{response.status_code} {response.text[:200]}")
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=work, args=(h,)) for h in self.http[:clients]]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        if errors:
            raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
        return latencies, wall

    def close(self) -> None:
        for http in self.http:
            http.close()


def alternate(
    clients: Clients,
    cases: dict[str, Request],
    rounds: int,
    requests: int,
    concurrency: int,
) -> dict[str, tuple[list[float], list[float]]]:
    """Rounds of each case in turn; per case: all latencies, and each round's rate (req/s)."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    for request in cases.values():  # warm-up, unrecorded
        clients.round(request, max(concurrency, 20), concurrency)
    for r in range(rounds):
        for name, request in cases.items():
            latencies, wall = clients.round(request, requests, concurrency)
            out[name][0].extend(latencies)
            out[name][1].append(requests / wall)
        log(f"round {r + 1}/{rounds} done ({concurrency} clients)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~40 second smoke run")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    database_url, redis_url = common.prepare_environment(BENCH_DATABASE)
    redis_url = os.environ["REDIS_URL"] = common.with_redis_db(redis_url, BENCH_REDIS_DB)
    common.check_services(database_url, redis_url)
    started = time.monotonic()
    common.recreate_database(database_url)
    common.setup_django(migrate=True)
    import agentmaestro.celery  # noqa: F401  (configures the Celery app this process sends with)
    from agentmaestro.celery import app as celery_app

    with celery_app.connection_for_write() as conn:
        for queue in ("ticks", "activities"):
            conn.default_channel.queue_purge(queue)
    log(f"database {database_url} ready, redis {redis_url}")

    results: dict[str, Any] = {"quick": args.quick, "clients": CLIENTS}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp_name:
        tmp = Path(os.environ.get("BENCH_LOG_DIR") or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        port = common.free_port()
        web = start_process(tmp, "web", ["web", "--port", str(port), "--workers", "2"])
        worker = start_process(
            tmp,
            "worker",
            [
                "worker",
                "--queues",
                "ticks,activities",
                "--pool",
                "threads",
                "--concurrency",
                "8",
                "--hostname",
                "bench-api@%h",
                "--loglevel",
                "WARNING",
            ],
        )
        clients: Clients | None = None
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz", web)
            fx = make_fixtures()
            engine_events = finish_long_run(fx.long_run_id)
            log(f"long run: {engine_events} engine events, topped up to {EVENTS}")
            results["long_run_engine_events"] = engine_events
            clients = Clients(base, fx.token)
            run_path = f"/api/v1/runs/{fx.long_run_id}/"
            # Sanity: the page and the snapshot are what we think they are.
            page = clients.http[0].get(run_path + "events/?since_seq=250&limit=500").json()
            if len(page["items"]) != 500 or page["last_seq"] != EVENTS:
                raise RuntimeError(f"unexpected events page: last_seq {page.get('last_seq')}")
            snapshot = clients.http[0].get(run_path).json()
            results["snapshot_steps"] = len(snapshot["steps"])
            results["snapshot_tool_calls"] = len(snapshot["tool_calls"])

            body = {"agent": fx.quick_agent, "input": {"prompt": "go"}}
            batch = uuid.uuid4().hex[:8]

            def create(http: Any, i: int) -> Any:
                key = f"{batch}-{time.monotonic_ns()}-{threading.get_ident()}-{i}"
                return http.post(
                    "/api/v1/workspaces/bench/runs/", json=body, headers={"Idempotency-Key": key}
                )

            def floor(http: Any, i: int) -> Any:
                return http.get("/api/v1/me/")

            def snap(http: Any, i: int) -> Any:
                return http.get(run_path)

            def events(http: Any, i: int) -> Any:
                return http.get(run_path + "events/", params={"since_seq": 250, "limit": 500})

            # First, while the worker is idle: the concurrent case leaves it hundreds of runs
            # to execute, whose CPU use would land on these single-client figures.
            log("sequential: snapshot and events page vs floor, 1 client")
            seq = alternate(
                clients,
                {"snapshot": snap, "events": events, "floor": floor},
                plan.rounds,
                plan.sequential_requests,
                1,
            )
            log(f"concurrent: run creation vs floor, {CLIENTS} clients")
            conc = alternate(
                clients,
                {"create": create, "floor": floor},
                plan.rounds,
                plan.concurrent_requests,
                CLIENTS,
            )
        finally:
            if clients is not None:
                clients.close()
            common.stop_process(web)
            common.stop_process(worker)
            errors = (tmp / "web.log").read_text(errors="replace")
            results["web_errors"] = errors.count("Traceback")
            if results["web_errors"]:
                log("web log tail:\n" + "\n".join(errors.splitlines()[-20:]))

    p = common.percentile
    results.update(
        run_create_p50_ms=round(p(conc["create"][0], 50), 3),
        run_create_p99_ms=round(p(conc["create"][0], 99), 3),
        run_creates_per_s_20=round(common.median(conc["create"][1]), 1),
        floor_p50_ms_20=round(p(conc["floor"][0], 50), 3),
        floor_p99_ms=round(p(conc["floor"][0], 99), 3),
        floor_per_s_20=round(common.median(conc["floor"][1]), 1),
        snapshot_p50_ms_1000ev=round(p(seq["snapshot"][0], 50), 3),
        events_page_p50_ms_1000ev=round(p(seq["events"][0], 50), 3),
        floor_p50_ms=round(p(seq["floor"][0], 50), 3),
    )
    rows = [
        common.Row(
            "run create p99, 20 clients (floor: GET /me/)",
            results["run_create_p99_ms"],
            results["floor_p99_ms"],
            "ms",
            "max",
            4,
        ),
        common.Row(
            "run create p50, 20 clients",
            results["run_create_p50_ms"],
            results["floor_p50_ms_20"],
            "ms",
        ),
        common.Row(
            "runs created per second, 20 clients",
            results["run_creates_per_s_20"],
            results["floor_per_s_20"],
            "req/s",
        ),
        common.Row(
            "snapshot p50, run of 1,000 events, 1 client",
            results["snapshot_p50_ms_1000ev"],
            results["floor_p50_ms"],
            "ms",
            "max",
            3,
        ),
        common.Row(
            "500-event page p50, 1 client",
            results["events_page_p50_ms_1000ev"],
            results["floor_p50_ms"],
            "ms",
            "max",
            3,
        ),
    ]
    for row in rows:
        if row.verdict:
            print(
                f"{row.verdict}: {row.label}: {common.fmt(row.ours)} {row.unit} "
                f"vs floor {common.fmt(row.floor)} {row.unit} (target {row.target})"
            )
    common.finish(rows, results, started)


if __name__ == "__main__":
    main()
