"""The run stream over real sockets: order, exactly-once, reconnects, gaps, idleness."""

from __future__ import annotations

import asyncio
import copy
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import connection

from agentmaestro.runs.events.broadcast import broadcaster
from agentmaestro.runs.events.store import append_events
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentRun, RunEvent
from agentmaestro.runs.services.runs import run_add_note
from tests.factories import Personas, make_personas
from tests.live import LiveServer, run_live_server
from tests.ws.helpers import (
    connect,
    drop,
    events_until,
    next_frame,
    reply_to,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def people() -> Personas:
    return await database_sync_to_async(make_personas)()


@database_sync_to_async
def new_run(personas: Personas) -> AgentRun:
    return personas.run()


@database_sync_to_async
def add_notes(run: AgentRun, count: int, per_commit: int = 1) -> int:
    last = 0
    for start in range(0, count, per_commit):
        batch = [
            NewEvent("run.note", {"message": f"note {i}"})
            for i in range(start, min(count, start + per_commit))
        ]
        last = append_events(run.id, batch)[-1].seq
    return last


@database_sync_to_async
def stored_frames(run: AgentRun) -> list[tuple[int, str, Any]]:
    return list(
        RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", "type", "payload")
    )


def as_rows(frames: list[dict[str, Any]]) -> list[tuple[int, str, Any]]:
    return [(f["seq"], f["event_type"], f["payload"]) for f in frames]


@pytest.fixture
def drop_broadcasts() -> Iterator[list[int]]:
    """Seqs listed here are silently dropped by this process's broadcaster."""
    doomed: list[int] = []

    def hook(group: str, message: dict[str, Any]) -> bool:
        events = message.get("events") or []
        return any(event["seq"] in doomed for event in events)

    broadcaster.drop_hook = hook
    yield doomed
    broadcaster.drop_hook = None


async def test_two_clients_each_receive_every_event_once_in_order(
    web_server: LiveServer, people: Personas
) -> None:
    run = await new_run(people)
    token = await token_for(people.viewer)
    path = f"/ws/runs/{run.id}/?since_seq=0"
    first = await connect(web_server.ws_url, path, token=token)
    second = await connect(web_server.ws_url, path, token=token)
    async with first, second:
        writer = asyncio.create_task(add_notes(run, 300, per_commit=3))
        got_first, got_second = await asyncio.gather(
            events_until(first, 301, timeout=30), events_until(second, 301, timeout=30)
        )
        await writer
    expected = await stored_frames(run)
    assert [row[0] for row in expected] == list(range(1, 302))
    assert as_rows(got_first) == expected
    assert as_rows(got_second) == expected


async def test_since_seq_sends_only_later_events(web_server: LiveServer, people: Personas) -> None:
    run = await new_run(people)
    await add_notes(run, 9)  # seqs 2..10
    token = await token_for(people.member)
    async with await connect(
        web_server.ws_url, f"/ws/runs/{run.id}/?since_seq=7", token=token
    ) as ws:
        frames = await events_until(ws, 10)
    assert [f["seq"] for f in frames] == [8, 9, 10]


class Writer(threading.Thread):
    """Appends notes at a jittery pace from its own thread and DB connection."""

    def __init__(self, run_id: Any, count: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.run_id, self.count, self.rng = run_id, count, random.Random(seed)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            done = 0
            while done < self.count:
                k = min(self.count - done, self.rng.choice([1, 1, 2, 5]))
                append_events(
                    self.run_id,
                    [NewEvent("run.note", {"message": f"{done + i}"}) for i in range(k)],
                )
                done += k
                time.sleep(self.rng.random() * 0.004)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            connection.close()


@pytest.mark.slow
async def test_reconnecting_at_random_points_ends_with_exactly_the_stored_log(
    web_server: LiveServer, people: Personas
) -> None:
    token = await token_for(people.viewer)
    rng = random.Random(20261125)
    for trial in range(50):
        run = await new_run(people)
        count = 60
        writer = Writer(run.id, count, seed=trial)
        received: list[dict[str, Any]] = []
        writer.start()
        # Disconnect one to three times, each after a random number of frames.
        for _ in range(rng.randint(1, 3)):
            since = received[-1]["seq"] if received else 0
            ws = await connect(
                web_server.ws_url, f"/ws/runs/{run.id}/?since_seq={since}", token=token
            )
            for _ in range(rng.randint(0, 25)):
                if received and received[-1]["seq"] == count + 1:
                    break  # all in: waiting would only collect heartbeats
                frame = await next_frame(ws)
                if not frame.get("ephemeral"):
                    received.append(frame)
            # Half the time a clean close, half the time the network just goes away.
            if rng.random() < 0.5:
                await ws.close()
            else:
                drop(ws)
        await asyncio.to_thread(writer.join, 30)
        assert writer.error is None, writer.error
        since = received[-1]["seq"] if received else 0
        async with await connect(
            web_server.ws_url, f"/ws/runs/{run.id}/?since_seq={since}", token=token
        ) as ws:
            if since < count + 1:
                received += await events_until(ws, count + 1)
        assert as_rows(received) == await stored_frames(run), f"trial {trial}"


async def test_a_lost_broadcast_is_filled_from_the_database(
    web_server: LiveServer, people: Personas, drop_broadcasts: list[int]
) -> None:
    run = await new_run(people)
    token = await token_for(people.viewer)
    async with await connect(web_server.ws_url, f"/ws/runs/{run.id}/", token=token) as ws:
        assert [f["seq"] for f in await events_until(ws, 1)] == [1]
        drop_broadcasts.append(2)
        await add_notes(run, 1)  # seq 2: its broadcast is dropped
        await add_notes(run, 1)  # seq 3 arrives live and reveals the gap
        frames = await events_until(ws, 3, timeout=0.9)  # well inside one heartbeat (1 s)
    assert [f["seq"] for f in frames] == [2, 3]
    assert frames[0]["payload"] == {"message": "note 0", "source": "system"}


async def test_a_lost_last_broadcast_arrives_with_the_next_heartbeat(
    web_server: LiveServer, people: Personas, drop_broadcasts: list[int]
) -> None:
    run = await new_run(people)
    token = await token_for(people.viewer)
    async with await connect(web_server.ws_url, f"/ws/runs/{run.id}/", token=token) as ws:
        await events_until(ws, 1)
        drop_broadcasts.append(2)
        await add_notes(run, 1)
        frames = await events_until(ws, 2, timeout=3)
        assert [f["seq"] for f in frames] == [2]
        heartbeat = await next_frame(ws, timeout=3)
        assert heartbeat == {"type": "heartbeat", "ephemeral": True, "last_seq": 2}


async def test_commands_and_bad_messages_get_replies_and_the_socket_stays_up(
    web_server: LiveServer, people: Personas
) -> None:
    run = await new_run(people)
    token = await token_for(people.member)
    async with await connect(web_server.ws_url, f"/ws/runs/{run.id}/", token=token) as ws:
        await events_until(ws, 1)
        assert (await reply_to(ws, "not json"))["code"] == "invalid_message"
        assert (await reply_to(ws, [1, 2]))["code"] == "invalid_message"
        assert (await reply_to(ws, {"no": "type"}))["code"] == "invalid_message"
        await ws.send(b"\x00binary")
        assert (await next_frame(ws))["code"] == "invalid_message"
        unknown = await reply_to(ws, {"type": "explode", "id": 7})
        assert unknown["code"] == "unknown_message_type"
        assert unknown["id"] == 7
        assert unknown["ephemeral"] is True
        assert await reply_to(ws, {"type": "ping", "id": "a"}) == {
            "type": "pong",
            "ephemeral": True,
            "id": "a",
        }
        bad_reason = await reply_to(ws, {"type": "cancel", "reason": 5})
        assert bad_reason["code"] == "invalid_message"
        ack = await reply_to(ws, {"type": "cancel", "reason": "enough"})
        assert ack["type"] == "ack"
        assert ack["command"] == "cancel"
        frames = await events_until(ws, ack["last_seq"])
        assert frames[-1]["event_type"] == "run.status_changed"
        assert frames[-1]["payload"]["to_status"] == "CANCELLED"
        again = await reply_to(ws, {"type": "cancel"})
        assert again["code"] == "run_already_finished"


async def test_a_viewer_may_watch_but_not_cancel(web_server: LiveServer, people: Personas) -> None:
    run = await new_run(people)
    token = await token_for(people.viewer)
    async with await connect(web_server.ws_url, f"/ws/runs/{run.id}/", token=token) as ws:
        await events_until(ws, 1)
        refused = await reply_to(ws, {"type": "cancel"})
        assert refused["code"] == "forbidden"
        assert refused["details"] == {"required_role": "member", "role": "viewer"}
        await add_notes(run, 1)
        assert [f["seq"] for f in await events_until(ws, 2)] == [2]
    assert (await database_sync_to_async(AgentRun.objects.get)(id=run.id)).status == "PENDING"


async def test_the_workspace_socket_gets_a_summary_per_commit(
    web_server: LiveServer, people: Personas
) -> None:
    token = await token_for(people.viewer)
    run = await new_run(people)
    async with await connect(
        web_server.ws_url, f"/ws/workspaces/{people.workspace.id}/", token=token
    ) as ws:
        await database_sync_to_async(run_add_note)(run_id=run.id, message="hello")
        while (frame := await next_frame(ws))["type"] != "run.summary":
            pass
    assert frame == {
        "type": "run.summary",
        "ephemeral": True,
        "run": {
            "id": str(run.id),
            "status": "PENDING",
            "last_seq": 2,
            "last_event_type": "run.note",
        },
    }


@pytest.fixture
def channel_layer_kind(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Make this test process publish through the same Redis layer kind as the server."""
    from channels.layers import channel_layers
    from django.conf import settings

    kind: str = request.param
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["BACKEND"] = {
        "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "core": "channels_redis.core.RedisChannelLayer",
    }[kind]
    monkeypatch.setattr(settings, "CHANNEL_LAYERS", layers)
    channel_layers.backends.clear()
    yield kind
    channel_layers.backends.clear()


@pytest.mark.slow
@pytest.mark.parametrize("channel_layer_kind", ["pubsub", "core"], indirect=True)
async def test_an_idle_socket_stays_open_for_60_seconds(
    people: Personas, tmp_path: Any, channel_layer_kind: str
) -> None:
    # Heartbeats every 25 s: the socket is quiet for longer than redis-py 8's 5 s default
    # socket timeout, which closes idle sockets of the core layer with code 1011 unless
    # its hosts carry a longer socket_timeout (channels_redis#422).
    run = await new_run(people)
    token = await token_for(people.viewer)
    with run_live_server(
        tmp_path,
        AGENTMAESTRO_WS_HEARTBEAT_SECONDS="25",
        AGENTMAESTRO_CHANNEL_LAYER=channel_layer_kind,
    ) as server:
        async with await connect(server.ws_url, f"/ws/runs/{run.id}/", token=token) as ws:
            await events_until(ws, 1)
            loop = asyncio.get_running_loop()
            started = loop.time()
            heartbeats = 0
            while loop.time() - started < 60:
                try:
                    frame = await next_frame(ws, timeout=60 - (loop.time() - started))
                except TimeoutError:
                    break
                assert frame["type"] == "heartbeat", frame
                heartbeats += 1
            assert heartbeats == 2
            await add_notes(run, 1)
            assert [f["seq"] for f in await events_until(ws, 2)] == [2]
            assert (await reply_to(ws, {"type": "ping"}))["type"] == "pong"
        assert "Traceback" not in server.log(), server.log()


async def test_closing_mid_stream_leaves_the_server_healthy(
    web_server: LiveServer, people: Personas
) -> None:
    run = await new_run(people)
    await add_notes(run, 50)
    token = await token_for(people.viewer)
    ws = await connect(web_server.ws_url, f"/ws/runs/{run.id}/", token=token)
    await ws.close()
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    async with await connect(web_server.ws_url, f"/ws/runs/{run.id}/", token=token) as ws2:
        assert len(await events_until(ws2, 51)) == 51
