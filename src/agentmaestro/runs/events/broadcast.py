"""Fan committed events out to WebSocket consumers through the channel layer.

Sync code (Celery tasks, services) must not pay for a Redis connection per event
(``async_to_sync(group_send)`` opens one per call, ~1.5 ms here), so publishes are
handed to one long-lived event loop, which keeps the channel layer's connections
open. In the web process that loop is the server's own (bound at ASGI startup), which
the in-memory channel layer of standalone mode requires; elsewhere a daemon thread
runs a private loop.

Publishing never raises and never blocks the caller: a broadcast that fails (Redis
down) is logged and dropped. Nothing is lost by that — the database has the event,
and consumers fill gaps from it (see ``runs/consumers.py``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from channels.layers import get_channel_layer

from agentmaestro.runs.events.types import StoredEvent

logger = logging.getLogger(__name__)

Message = dict[str, Any]
# Tests install a hook to drop chosen broadcasts: (group, message) -> True to drop.
DropHook = Callable[[str, Message], bool]

# Past this many publishes waiting on the loop (Redis unreachable and slow to time out),
# new ones are dropped rather than queued without bound; consumers recover from the DB.
MAX_IN_FLIGHT = 10_000
PUBLISH_TIMEOUT_SECONDS = 2.0


def run_group(run_id: uuid.UUID | str) -> str:
    return f"run.{run_id}"


def workspace_group(workspace_id: uuid.UUID | str) -> str:
    return f"ws.{workspace_id}"


def approvals_group(workspace_id: uuid.UUID | str) -> str:
    return f"approvals.{workspace_id}"


class Broadcaster:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._in_flight = 0
        self.drop_hook: DropHook | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Publish on ``loop`` from now on (the ASGI server's loop, at startup)."""
        with self._lock:
            self._loop = loop

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="agentmaestro-broadcast", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    def publish_events(
        self, workspace_id: uuid.UUID, status: str, events: Sequence[StoredEvent]
    ) -> None:
        if not events:
            return
        run_id = events[0].run_id
        last = events[-1]
        self.publish(
            [
                (
                    run_group(run_id),
                    {"type": "run.events", "events": [event.as_frame() for event in events]},
                ),
                (
                    workspace_group(workspace_id),
                    {
                        "type": "run.summary",
                        "run": {
                            "id": str(run_id),
                            "status": status,
                            "last_seq": last.seq,
                            "last_event_type": last.type,
                        },
                    },
                ),
            ]
        )

    def publish(self, messages: Sequence[tuple[str, Message]]) -> None:
        hook = self.drop_hook
        if hook is not None:
            messages = [(group, msg) for group, msg in messages if not hook(group, msg)]
        if not messages:
            return
        with self._lock:
            if self._in_flight >= MAX_IN_FLIGHT:
                logger.warning("broadcast backlog full; dropping %d messages", len(messages))
                return
            self._in_flight += 1
        try:
            future = asyncio.run_coroutine_threadsafe(self._send(messages), self._get_loop())
        except RuntimeError:  # the loop was closed under us (shutdown)
            self._done(None)
            return
        future.add_done_callback(self._done)

    def _done(self, _future: Future[None] | None) -> None:
        with self._lock:
            self._in_flight -= 1

    async def _send(self, messages: Sequence[tuple[str, Message]]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for group, message in messages:
            try:
                await asyncio.wait_for(
                    layer.group_send(group, message), timeout=PUBLISH_TIMEOUT_SECONDS
                )
            except Exception as exc:  # noqa: BLE001 — a broadcast must never fail its caller
                logger.warning("broadcast to %s failed: %r", group, exc)


broadcaster = Broadcaster()
