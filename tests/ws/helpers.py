"""Real WebSocket clients (the ``websockets`` library) against the live web process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from channels.db import database_sync_to_async
from django.test import Client
from websockets.asyncio.client import ClientConnection

from agentmaestro.accounts.services import api_token_create

Frame = dict[str, Any]


@database_sync_to_async
def token_for(user: Any) -> str:
    return api_token_create(user=user)[1]


@database_sync_to_async
def session_cookie_for(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.cookies["sessionid"].value)


async def connect(
    ws_url: str,
    path: str,
    *,
    token: str | None = None,
    cookie: str | None = None,
    origin: str | None = None,
) -> ClientConnection:
    headers: dict[str, str] = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = f"sessionid={cookie}"
    return await websockets.connect(
        f"{ws_url}{path}",
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=10,
        # Buffer without limit: with the default (16 frames) a client that stops
        # reading also stops seeing the server's close frame, and close() stalls 10 s.
        max_queue=None,
    )


def drop(ws: ClientConnection) -> None:
    """Cut the TCP connection with no close handshake, like a network failure."""
    ws.transport.abort()


async def close_code_of(ws_url: str, path: str, **auth: Any) -> int | None:
    """Connect and return the close code the server ends the socket with."""
    ws = await connect(ws_url, path, **auth)
    try:
        await asyncio.wait_for(ws.recv(), timeout=5)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    finally:
        await ws.close()
    raise AssertionError("the server sent a frame instead of closing")


async def next_frame(ws: ClientConnection, timeout: float = 5) -> Frame:
    frame: Frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
    return frame


async def events_until(ws: ClientConnection, last_seq: int, timeout: float = 10) -> list[Frame]:
    """Event frames received until ``last_seq`` arrives (ephemeral frames skipped)."""
    frames: list[Frame] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not frames or frames[-1]["seq"] < last_seq:
        remaining = deadline - loop.time()
        if remaining <= 0:
            got = [f["seq"] for f in frames]
            raise AssertionError(f"timed out waiting for seq {last_seq}; got {got[-10:]}")
        frame = await next_frame(ws, remaining)
        if frame.get("ephemeral"):
            continue
        assert frame["type"] == "event", frame
        frames.append(frame)
    return frames


async def send(ws: ClientConnection, message: Any) -> None:
    await ws.send(message if isinstance(message, str) else json.dumps(message))


async def reply_to(ws: ClientConnection, message: Any, timeout: float = 5) -> Frame:
    """Send, then return the first non-event, non-heartbeat frame."""
    await send(ws, message)
    while True:
        frame = await next_frame(ws, timeout)
        if frame["type"] not in ("event", "heartbeat"):
            return frame
