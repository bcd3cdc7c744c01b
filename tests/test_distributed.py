"""The distributed setup as real processes (issue 5's acceptance test).

Two ``agentmaestro web`` processes, two ``agentmaestro worker`` processes and one
``agentmaestro beat``, on the test database and Redis. Twenty runs of a scripted agent
(two turns of tool calls, slow model turns so the runs overlap) are started through the
REST API with an API token, alternating between the web processes; a WebSocket client
per run follows it from ``since_seq=0`` on the *other* web process until it ends. So the
events a worker commits reach each client through Redis and a web process that neither
created the run nor ran it. Every client must have received exactly the run's stored
events: the same seqs, types, versions and payloads, in order, none missing, none twice.

The web processes' heartbeat is set far beyond the test's time bounds. A heartbeat
re-reads the run's ``last_seq`` and would repair a lost broadcast within one beat; here
the events must arrive by the live path (broadcast, gap fill, dropping duplicates), so a
broadcast that never arrives fails the test by its timeout instead of being papered over.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from django.db import connection

from agentmaestro.accounts.services import api_token_create
from agentmaestro.celery import app as celery_app
from agentmaestro.console.management.commands.web import WEB_DB_POOL_SIZE
from agentmaestro.runs.models import AgentRun, RunEvent
from agentmaestro.runs.states import TERMINAL_STATUSES
from tests.engine.helpers import scripted_agent
from tests.factories import Personas
from tests.live import (
    LiveServer,
    spawn_web,
    start_beat,
    start_web,
    start_worker,
    stopping_all,
    wait_for_log,
    wait_until_serving,
)

pytestmark = pytest.mark.django_db(transaction=True)

RUNS = 20
MODEL_DELAY_MS = 150
# Seconds for all 20 runs to be started, followed and finished (they take about 3).
FOLLOW_TIMEOUT = 45.0
# Far beyond FOLLOW_TIMEOUT: no heartbeat catch-up may deliver what the live path lost.
HEARTBEAT_SECONDS = "600"
RECONCILE_SECONDS = "1"
TERMINAL = {status.value for status in TERMINAL_STATUSES}

Frame = dict[str, Any]
Row = tuple[int, str, int, Any]


def two_tool_turns(number: int) -> list[dict[str, Any]]:
    """Three slow model turns; the first two each ask for two tool calls at once."""
    return [
        {
            "delay_ms": MODEL_DELAY_MS,
            "tool_calls": [
                {"name": "calculator", "arguments": {"expression": f"{number} + 1"}},
                {"name": "echo", "arguments": {"value": f"first {number}"}},
            ],
        },
        {
            "delay_ms": MODEL_DELAY_MS,
            "tool_calls": [
                {"name": "calculator", "arguments": {"expression": f"{number} * 2"}},
                {"name": "echo", "arguments": {"value": [number]}},
            ],
        },
        {"delay_ms": MODEL_DELAY_MS, "text": f"done with {number}"},
    ]


@dataclass
class Followed:
    """One run as its WebSocket client saw it."""

    number: int
    created_on: LiveServer
    watched_on: LiveServer
    run_id: str = ""
    frames: list[Frame] = field(default_factory=list)

    def rows(self) -> list[Row]:
        return [(f["seq"], f["event_type"], f["version"], f["payload"]) for f in self.frames]

    def ended(self) -> bool:
        return any(
            f["event_type"] == "run.status_changed" and f["payload"]["to_status"] in TERMINAL
            for f in self.frames
        )


def stored_rows(run_id: str) -> list[Row]:
    return list(
        RunEvent.objects.filter(run_id=run_id)
        .order_by("seq")
        .values_list("seq", "type", "version", "payload")
    )


def purge_queues() -> None:
    """Start from an empty broker: nothing left over from an earlier test may run."""
    with celery_app.connection_for_write() as conn:
        for queue in ("ticks", "activities"):
            conn.default_channel.queue_purge(queue)


async def next_event(ws: websockets.ClientConnection) -> Frame:
    """The next stored-event frame; ephemeral ones (token deltas) are skipped."""
    while True:
        frame: Frame = json.loads(await ws.recv())
        if not frame.get("ephemeral"):
            assert frame["type"] == "event", frame
            return frame


async def follow(http: httpx.AsyncClient, followed: Followed, workspace: str, agent: str) -> None:
    """Start the run on one web process and follow it on the other until it ends."""
    response = await http.post(
        f"{followed.created_on.url}/api/v1/workspaces/{workspace}/runs/",
        json={"agent": agent, "input": {"prompt": f"run {followed.number}"}},
    )
    assert response.status_code == 201, response.text
    followed.run_id = response.json()["id"]
    async with websockets.connect(
        f"{followed.watched_on.ws_url}/ws/runs/{followed.run_id}/?since_seq=0",
        additional_headers={"Authorization": http.headers["Authorization"]},
        open_timeout=10,
        max_queue=None,
    ) as ws:
        while not followed.ended():
            followed.frames.append(await next_event(ws))
        # Events may follow the terminal status in its commit; the final last_seq says.
        snapshot = await http.get(f"{followed.created_on.url}/api/v1/runs/{followed.run_id}/")
        assert snapshot.status_code == 200, snapshot.text
        last_seq: int = snapshot.json()["last_seq"]
        while followed.frames[-1]["seq"] < last_seq:
            followed.frames.append(await next_event(ws))


async def follow_all(
    webs: list[LiveServer], token: str, workspace: str, agent: str
) -> list[Followed]:
    everyone = [
        Followed(number, created_on=webs[number % 2], watched_on=webs[(number + 1) % 2])
        for number in range(RUNS)
    ]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        try:
            async with asyncio.timeout(FOLLOW_TIMEOUT):
                await asyncio.gather(*(follow(http, f, workspace, agent) for f in everyone))
        except TimeoutError:
            unfinished = {
                f.run_id or f"#{f.number} (not created)": [x["seq"] for x in f.frames][-5:]
                for f in everyone
                if not f.ended()
            }
            raise AssertionError(
                f"not every run was seen to its end in {FOLLOW_TIMEOUT} s; "
                f"unfinished (run: last seqs received): {unfinished}"
            ) from None
    return everyone


@pytest.mark.slow
def test_twenty_runs_stream_exactly_their_stored_events_across_web_and_worker_processes(
    personas: Personas, tmp_path: Path
) -> None:
    scripted_agent(personas.workspace, two_tool_turns(RUNS), slug="distributed")
    _, token = api_token_create(user=personas.member, name="distributed")
    purge_queues()
    with stopping_all() as started:
        for name in ("w1", "w2"):
            started.add(start_worker(tmp_path, name))
        beat = started.add(start_beat(tmp_path, AGENTMAESTRO_RECONCILE_SECONDS=RECONCILE_SECONDS))
        webs = [
            started.add(
                spawn_web(tmp_path, name, AGENTMAESTRO_WS_HEARTBEAT_SECONDS=HEARTBEAT_SECONDS)
            )
            for name in ("web1", "web2")
        ]
        for web in webs:
            wait_until_serving(web)

        followed = asyncio.run(follow_all(webs, token, personas.workspace.slug, "distributed"))

        for run in followed:
            stored = stored_rows(run.run_id)
            assert [row[0] for row in stored] == list(range(1, len(stored) + 1))
            assert run.rows() == stored, (
                f"run {run.run_id} (created on {run.created_on.name}, watched on "
                f"{run.watched_on.name}): the client got seqs {[r[0] for r in run.rows()]}, "
                f"the database has {[r[0] for r in stored]}"
            )
            assert {f["run_id"] for f in run.frames} == {run.run_id}
            state = AgentRun.objects.get(id=run.run_id)
            assert state.status == AgentRun.Status.COMPLETED, (run.run_id, state.error)
            assert state.output == {"text": f"done with {RUNS}"}
        # Beat ran beside all of it, sending the reconciler every second.
        wait_for_log(beat, "runs.reconcile")
        started.assert_all_running()


POOL_TEST_APP = "agentmaestro-pool-test"


def connections_of(application_name: str) -> int:
    """Connections to the test database of the processes started with this PGAPPNAME
    (other processes of the session, such as the shared worker, hold some too)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [application_name],
        )
        row = cursor.fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def call_the_api(web: LiveServer, token: str, clients: int, requests_each: int) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:

        async def client() -> None:
            for _ in range(requests_each):
                response = await http.get(f"{web.url}/api/v1/me/")
                assert response.status_code == 200, response.text

        await asyncio.gather(*(client() for _ in range(clients)))


def test_a_web_process_on_postgresql_shares_a_few_connections_among_its_requests(
    personas: Personas, tmp_path: Path
) -> None:
    """By default: CONN_MAX_AGE at its default and no AGENTMAESTRO_DB_POOL_SIZE.

    Under ASGI each request runs in a thread of its own; with persistent connections and
    no pool, every request would leave a connection open (dozens here, and PostgreSQL's
    max_connections runs out under real traffic).
    """
    _, token = api_token_create(user=personas.member, name="pool")
    with stopping_all() as started:
        web = started.add(
            start_web(
                tmp_path,
                "web",
                CONN_MAX_AGE=None,
                AGENTMAESTRO_DB_POOL_SIZE=None,
                PGAPPNAME=POOL_TEST_APP,  # libpq names the process's connections
            )
        )
        asyncio.run(call_the_api(web, token, clients=12, requests_each=3))
        held = connections_of(POOL_TEST_APP)
        assert 0 < held <= WEB_DB_POOL_SIZE
