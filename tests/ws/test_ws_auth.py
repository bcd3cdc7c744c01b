"""Who may open which socket; refusals close with the documented codes."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async

from agentmaestro.common.consumers import CloseCode
from agentmaestro.runs.services.runs import run_create
from tests.factories import Personas, make_personas
from tests.live import LiveServer
from tests.ws.helpers import (
    close_code_of,
    connect,
    events_until,
    next_frame,
    session_cookie_for,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def people() -> Personas:
    return await database_sync_to_async(make_personas)()


@pytest.fixture
async def run_path(people: Personas) -> str:
    run = await database_sync_to_async(people.run)()
    return f"/ws/runs/{run.id}/"


async def test_it_refuses_an_anonymous_client(web_server: LiveServer, run_path: str) -> None:
    assert await close_code_of(web_server.ws_url, run_path) == CloseCode.UNAUTHENTICATED


async def test_it_refuses_an_unknown_token(web_server: LiveServer, run_path: str) -> None:
    code = await close_code_of(web_server.ws_url, run_path, token="am_not-a-real-token")
    assert code == CloseCode.UNAUTHENTICATED


async def test_it_refuses_a_revoked_token(
    web_server: LiveServer, people: Personas, run_path: str
) -> None:
    from django.utils import timezone

    from agentmaestro.accounts.models import ApiToken

    token = await token_for(people.viewer)
    await database_sync_to_async(
        lambda: ApiToken.objects.filter(user=people.viewer).update(revoked_at=timezone.now())
    )()
    code = await close_code_of(web_server.ws_url, run_path, token=token)
    assert code == CloseCode.UNAUTHENTICATED


async def test_it_refuses_a_non_member_as_not_found(
    web_server: LiveServer, people: Personas, run_path: str
) -> None:
    token = await token_for(people.outsider)
    assert await close_code_of(web_server.ws_url, run_path, token=token) == CloseCode.NOT_FOUND


async def test_a_member_of_another_workspace_cannot_reach_across(
    web_server: LiveServer, people: Personas
) -> None:
    foreign_run = await database_sync_to_async(run_create)(agent=people.other_agent, input={})
    token = await token_for(people.owner)  # owner of acme, nothing in globex
    for path in (
        f"/ws/runs/{foreign_run.id}/",
        f"/ws/workspaces/{people.other_workspace.id}/",
        f"/ws/workspaces/{people.other_workspace.id}/approvals/",
    ):
        assert await close_code_of(web_server.ws_url, path, token=token) == CloseCode.NOT_FOUND


async def test_a_missing_run_and_an_unknown_path_are_not_found(
    web_server: LiveServer, people: Personas
) -> None:
    token = await token_for(people.owner)
    for path in (f"/ws/runs/{uuid.uuid4()}/", "/ws/runs/not-a-uuid/", "/ws/elsewhere/"):
        assert await close_code_of(web_server.ws_url, path, token=token) == CloseCode.NOT_FOUND


@pytest.mark.parametrize("since", ["-1", "abc", "99"])
async def test_a_bad_since_seq_is_a_bad_request(
    web_server: LiveServer, people: Personas, run_path: str, since: str
) -> None:
    token = await token_for(people.viewer)
    path = f"{run_path}?since_seq={since}"
    assert await close_code_of(web_server.ws_url, path, token=token) == CloseCode.BAD_REQUEST


async def test_a_session_handshake_from_an_allowed_origin_is_accepted(
    web_server: LiveServer, people: Personas, run_path: str
) -> None:
    cookie = await session_cookie_for(people.viewer)
    async with await connect(
        web_server.ws_url, run_path, cookie=cookie, origin=web_server.url
    ) as ws:
        assert [f["seq"] for f in await events_until(ws, 1)] == [1]


@pytest.mark.parametrize("origin", ["https://evil.example", "null", None])
async def test_a_session_handshake_from_a_foreign_or_missing_origin_is_refused(
    web_server: LiveServer, people: Personas, run_path: str, origin: str | None
) -> None:
    cookie = await session_cookie_for(people.viewer)
    code = await close_code_of(web_server.ws_url, run_path, cookie=cookie, origin=origin)
    assert code == CloseCode.FORBIDDEN_ORIGIN


async def test_a_token_handshake_needs_no_origin(
    web_server: LiveServer, people: Personas, run_path: str
) -> None:
    token = await token_for(people.viewer)
    async with await connect(web_server.ws_url, run_path, token=token) as ws:
        assert (await events_until(ws, 1))[0]["event_type"] == "run.created"


@pytest.mark.parametrize("suffix", ["", "approvals/"])
async def test_a_viewer_may_watch_workspace_sockets(
    web_server: LiveServer, people: Personas, suffix: str
) -> None:
    token = await token_for(people.viewer)
    path = f"/ws/workspaces/{people.workspace.id}/{suffix}"
    async with await connect(web_server.ws_url, path, token=token) as ws:
        await ws.send('{"type": "ping"}')
        assert await next_frame(ws) == {"type": "pong", "ephemeral": True}


async def test_a_member_removed_while_watching_is_disconnected(
    web_server: LiveServer, people: Personas, run_path: str
) -> None:
    import websockets

    from agentmaestro.workspaces.models import WorkspaceMembership

    token = await token_for(people.viewer)
    async with await connect(web_server.ws_url, run_path, token=token) as ws:
        await events_until(ws, 1)
        await database_sync_to_async(
            lambda: WorkspaceMembership.objects.filter(user=people.viewer).delete()
        )()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await next_frame(ws, timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.NOT_FOUND
