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
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer

from agentmaestro.runs.events.types import StoredEvent

logger = logging.getLogger(__name__)

Message = dict[str, Any]
# Tests install a hook to drop chosen broadcasts: (group, message) -> True to drop.
DropHook = Callable[[str, Message], bool]

# Past this many messages waiting on the loop (Redis unreachable and slow to time out),
# new ones are dropped rather than queued without bound; consumers recover from the DB.
MAX_PENDING = 20_000
PUBLISH_TIMEOUT_SECONDS = 2.0


def run_group(run_id: uuid.UUID | str) -> str:
    return f"run.{run_id}"


def workspace_group(workspace_id: uuid.UUID | str) -> str:
    return f"ws.{workspace_id}"


def approvals_group(workspace_id: uuid.UUID | str) -> str:
    return f"approvals.{workspace_id}"


class DirectPublisher:
    """PUBLISH with a plain Redis client from one publishing thread per process.

    For channels_redis's pub/sub layer on one Redis, whose ``group_send`` is a PUBLISH
    of ``layer.serialize(message)`` on ``<prefix>__group__<group>``: this sends exactly
    that, with a plain (sync) Redis client, so no hand-off to an event loop is needed
    (measured: that hand-off and its awaited replies cost as much as an engine step's own
    SQL). The committing thread only queues its messages; one daemon thread sends
    whatever is queued in one pipelined round trip — a busy worker's many commits share
    one — in the order queued, so one run's broadcasts from one process stay in order.
    Across processes they may overtake each other; consumers already put events back in
    order and fill gaps from the database (runs/consumers.py).
    """

    # After a failure, publishes are dropped for this long instead of each waiting for
    # Redis to time out; the database has every event and consumers catch up from it.
    BACKOFF_SECONDS = 1.0

    def __init__(self, layer: Any, url: str, prefix: str) -> None:
        import redis

        self._layer = layer
        self._prefix = prefix
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=PUBLISH_TIMEOUT_SECONDS,
            socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS,
        )
        self._down_until = 0.0
        self._queue: queue.SimpleQueue[Sequence[tuple[str, Message]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid = 0  # the process whose thread is draining the queue (0: none yet)
        self._backlog = 0

    @classmethod
    def for_layer(cls, layer: Any) -> DirectPublisher | None:
        """The direct publisher of ``layer``, or None if it is not one we can bypass."""
        from channels_redis.pubsub import RedisPubSubChannelLayer
        from django.conf import settings

        config = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {})
        hosts = config.get("hosts") or []
        if not isinstance(layer, RedisPubSubChannelLayer) or len(hosts) != 1:
            return None
        host = hosts[0]
        url = host.get("address") if isinstance(host, dict) else host
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://")):
            return None
        return cls(layer, url, config.get("prefix", "asgi"))

    def publish(self, messages: Sequence[tuple[str, Message]]) -> None:
        """Queue ``messages`` for the publishing thread; never blocks, never raises."""
        if time.monotonic() < self._down_until:
            return
        if self._pid != os.getpid():
            self._start()
        if self._backlog >= MAX_PENDING:
            logger.warning("broadcast backlog full; dropping %d messages", len(messages))
            return
        self._backlog += len(messages)
        self._queue.put(messages)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # A forked child inherits no thread: start its own, on a fresh queue.
            self._queue = queue.SimpleQueue()
            self._backlog = 0
            threading.Thread(target=self._drain, name="agentmaestro-publish", daemon=True).start()
            self._pid = os.getpid()

    def _drain(self) -> None:
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._send([m for messages in batch for m in messages])

    def _send(self, messages: list[tuple[str, Message]]) -> None:
        import redis

        self._backlog = max(0, self._backlog - len(messages))
        if time.monotonic() < self._down_until:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for group, message in messages:
                pipe.publish(f"{self._prefix}__group__{group}", self._layer.serialize(message))
            pipe.execute()
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + self.BACKOFF_SECONDS
            logger.warning("broadcast of %d messages failed: %r", len(messages), exc)
        except Exception:  # never let the thread die: later broadcasts would all be lost
            logger.exception("broadcast of %d messages failed", len(messages))


class Broadcaster:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: deque[tuple[str, Message]] = deque()
        self._draining = False
        self._drain_task: asyncio.Future[None] | None = None
        self.drop_hook: DropHook | None = None
        # The channel layer last seen, and its DirectPublisher (None: the event-loop path).
        self._direct_for: Any = None
        self._direct: DirectPublisher | None = None

    def _direct_publisher(self) -> DirectPublisher | None:
        # The process's layer as channels caches it (a dict lookup, building nothing);
        # tests swap layers between cases.
        cached = channel_layers.backends.get(DEFAULT_CHANNEL_LAYER)
        if cached is None or cached is not self._direct_for:
            with self._lock:
                # Built here, one thread at a time: channels builds a layer on first use
                # without a lock, so threads racing to the first publish were each handed
                # a layer, and a publisher (and publishing thread) of their own.
                layer = get_channel_layer()
                if layer is not self._direct_for:
                    self._direct = DirectPublisher.for_layer(layer)
                    self._direct_for = layer
        return self._direct

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
        self,
        workspace_id: uuid.UUID,
        status: str,
        events: Sequence[StoredEvent],
        before: Sequence[tuple[str, Message]] = (),
    ) -> None:
        if not events:
            self.publish(before)
            return
        run_id = events[0].run_id
        last = events[-1]
        self.publish(
            [
                *before,
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
        direct = self._direct_publisher()
        if direct is not None:
            direct.publish(messages)
            return
        # The committing thread only queues and, if no drain is pending, wakes the loop
        # once: no Future or Task per commit (bench/events.py measured the hand-off as
        # the largest cost of an append).
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                logger.warning("broadcast backlog full; dropping %d messages", len(messages))
                return
            self._pending.extend(messages)
            if self._draining:
                return
            self._draining = True
        try:
            self._get_loop().call_soon_threadsafe(self._start_drain)
        except RuntimeError:  # the loop was closed under us (shutdown)
            with self._lock:
                self._draining = False

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        """Send everything queued, in order; one drain at a time keeps the order."""
        try:
            layer = get_channel_layer()
            while True:
                with self._lock:
                    if not self._pending:
                        self._draining = False
                        return
                    batch = list(self._pending)
                    self._pending.clear()
                if layer is None:
                    continue
                for group, message in batch:
                    try:
                        await asyncio.wait_for(
                            layer.group_send(group, message), timeout=PUBLISH_TIMEOUT_SECONDS
                        )
                    except Exception as exc:  # noqa: BLE001 — never fail the caller
                        logger.warning("broadcast to %s failed: %r", group, exc)
        except BaseException:
            # Never leave the flag set with nobody draining: the next publish restarts it.
            with self._lock:
                self._draining = False
            raise


broadcaster = Broadcaster()
