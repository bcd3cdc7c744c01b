"""Broadcasts leave only after commit, and never break the writer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.db import transaction

from agentmaestro.runs.events import broadcast as broadcast_module
from agentmaestro.runs.events.broadcast import broadcaster, run_group, workspace_group
from agentmaestro.runs.events.store import append_event
from agentmaestro.runs.models import RunEvent
from tests.factories import Personas

pytestmark = pytest.mark.django_db(transaction=True)


class Listener:
    """Subscribes to groups on the real Redis channel layer from its own loop thread."""

    def __init__(self, *groups: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.groups = groups
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        layer = get_channel_layer()
        name = await layer.new_channel()
        # One receive at a time, never cancelled until the end: cancelling a pending
        # receive (a timeout around it) can lose a message that was arriving just then.
        pending = asyncio.ensure_future(layer.receive(name))

        async def next_message(timeout: float) -> dict[str, Any] | None:
            nonlocal pending
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:
                return None
            message: dict[str, Any] = pending.result()
            pending = asyncio.ensure_future(layer.receive(name))
            return message

        for group in self.groups:
            await layer.group_add(group, name)
            # group_add returns before Redis has applied the SUBSCRIBE: wait for a probe
            # to come back, or the first broadcast of a test could race the subscription.
            # The probe goes out through the broadcaster, the way the tests' events do:
            # once it is back, the publisher is sending (not backing off after a failure
            # an earlier test caused, such as a Redis restart, which drops what it is
            # given), and whatever it had queued before (the run's creation) has gone
            # out ahead of it, in order, and is not taken for a test's broadcast.
            probe = {"type": "probe", "group": group}
            broadcaster.publish([(group, probe)])
            waited = 0.0
            while (message := await next_message(0.1)) != probe:
                waited += 0.1
                if message is None and waited >= 0.5:
                    broadcaster.publish([(group, probe)])
                    waited = 0.0
        self.ready.set()
        while not self.stop.is_set():
            message = await next_message(0.1)
            if message is not None and message["type"] != "probe":
                self.messages.append(message)
        pending.cancel()
        for group in self.groups:
            await layer.group_discard(group, name)

    def __enter__(self) -> Listener:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def wait_for(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.messages


@pytest.fixture
def run_and_listener(personas: Personas) -> Iterator[tuple[Any, Listener]]:
    run = personas.run()
    with Listener(run_group(run.id), workspace_group(run.workspace_id)) as listener:
        yield run, listener


def test_a_commit_broadcasts_the_events_and_a_summary(run_and_listener: Any) -> None:
    run, listener = run_and_listener
    stored = append_event(run.id, "run.note", {"message": "hi"})
    messages = listener.wait_for(2)
    by_type = {m["type"]: m for m in messages}
    assert by_type["run.events"]["events"] == [stored.as_frame()]
    assert by_type["run.summary"]["run"] == {
        "id": str(run.id),
        "status": "PENDING",
        "last_seq": 2,
        "last_event_type": "run.note",
    }


def test_a_rolled_back_transaction_broadcasts_nothing_and_leaves_no_gap(
    run_and_listener: Any,
) -> None:
    run, listener = run_and_listener
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        append_event(run.id, "run.note", {"message": "never"})
        time.sleep(0.2)  # ample time for a premature broadcast to show up
        assert listener.messages == []
        _ = 1 / 0
    time.sleep(0.3)
    assert listener.messages == []
    assert append_event(run.id, "run.note", {"message": "next"}).seq == 2
    assert [m["events"][0]["seq"] for m in listener.wait_for(2) if m["type"] == "run.events"] == [2]


def test_nothing_is_broadcast_before_the_commit(run_and_listener: Any) -> None:
    run, listener = run_and_listener
    with transaction.atomic():
        append_event(run.id, "run.note", {"message": "later"})
        time.sleep(0.2)
        assert listener.messages == []
    assert len(listener.wait_for(2)) == 2


def test_redis_down_does_not_fail_the_transaction(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Point the channel layer at a port where nothing listens: the publish fails,
    # the append commits anyway, and the failure is only logged.
    from channels.layers import channel_layers
    from django.conf import settings

    broken = {
        "default": {
            "BACKEND": settings.CHANNEL_LAYERS["default"]["BACKEND"],
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_timeout": 1}]},
        }
    }
    monkeypatch.setattr(settings, "CHANNEL_LAYERS", broken)
    channel_layers.backends.clear()
    failures: list[str] = []
    monkeypatch.setattr(
        broadcast_module.logger, "warning", lambda msg, *args: failures.append(msg % args)
    )
    try:
        run = personas.run()
        stored = append_event(run.id, "run.note", {"message": "still saved"})
        assert RunEvent.objects.filter(run=run, seq=stored.seq).exists()
        deadline = time.monotonic() + 5
        while len(failures) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert failures, "the failed publish was not reported"
        assert "failed" in failures[0]
    finally:
        channel_layers.backends.clear()


def test_sync_publishing_reuses_one_connection(run_and_listener: Any) -> None:
    """200 commits from sync code must not open a Redis connection each (1.5 ms apiece)."""
    import redis
    from django.conf import settings

    run, listener = run_and_listener
    client = redis.Redis.from_url(settings.CONFIG.redis_url)
    append_event(run.id, "run.note", {"message": "warm-up"})
    listener.wait_for(2)
    before = int(client.info("stats")["total_connections_received"])
    for i in range(200):
        append_event(run.id, "run.note", {"message": str(i)})
    listener.wait_for(2 + 400, timeout=10)
    after = int(client.info("stats")["total_connections_received"])
    assert len([m for m in listener.messages if m["type"] == "run.events"]) == 201
    assert after - before <= 3  # this test's INFO calls; not one per publish
    assert broadcaster is broadcast_module.broadcaster


def test_threads_racing_to_the_first_publish_share_one_publisher() -> None:
    """Channels' layer manager may build a process's layer twice when threads race to it
    first; every thread must still end up with the one publisher (one publishing thread,
    so one process's broadcasts stay in order)."""
    from channels.layers import channel_layers

    for attempt in range(20):
        channel_layers.backends.clear()
        fresh = broadcast_module.Broadcaster()
        barrier = threading.Barrier(8)
        got: list[Any] = []

        def first_publish(
            b: Any = fresh, gate: threading.Barrier = barrier, out: list[Any] = got
        ) -> None:
            gate.wait()
            out.append(b._direct_publisher())

        threads = [threading.Thread(target=first_publish) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert len(got) == 8
        assert got[0] is not None
        assert all(p is got[0] for p in got), f"attempt {attempt}: {len({id(p) for p in got})}"
