"""Streamed model tokens reach watchers as ephemeral frames; the finished turn is an event."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from agentmaestro.runs import dispatch
from agentmaestro.runs.services.runs import run_create
from tests.engine.helpers import scripted_agent
from tests.factories import Personas, make_personas
from tests.live import LiveServer, Worker
from tests.ws.helpers import connect, next_frame, token_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_watcher_sees_token_deltas_then_the_durable_turn(
    web_server: LiveServer, engine_worker: Worker
) -> None:
    people: Personas = await database_sync_to_async(make_personas)()
    agent = await database_sync_to_async(scripted_agent)(
        people.workspace, [{"text": "one two three four", "delay_ms": 300}]
    )
    run = await database_sync_to_async(run_create)(agent=agent, input={"prompt": "count"})
    token = await token_for(people.viewer)
    async with await connect(web_server.ws_url, f"/ws/runs/{run.id}/", token=token) as ws:
        await database_sync_to_async(dispatch.enqueue_tick)(run.id)
        deltas: list[str] = []
        events: list[dict[str, object]] = []
        while (
            not events
            or events[-1].get("event_type") != "run.status_changed"
            or (
                events[-1]["payload"]["to_status"] != "COMPLETED"  # type: ignore[index]
            )
        ):
            frame = await next_frame(ws, timeout=10)
            if frame["type"] == "token.delta":
                assert frame["ephemeral"] is True
                assert "seq" not in frame
                deltas.append(frame["text"])
            elif frame["type"] == "event":
                events.append(frame)
    assert "".join(deltas).split() == ["one", "two", "three", "four"]
    turn = [
        e
        for e in events
        if e["event_type"] == "step.updated" and e["payload"]["status"] == "COMPLETED"  # type: ignore[index]
    ]
    assert turn[0]["payload"]["payload"]["text"] == "one two three four"  # type: ignore[index]
