from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentmaestro.celery import app
from agentmaestro.runs.events.broadcast import broadcaster
from tests.engine.helpers import MemoryBroker, use_broker


@pytest.fixture
def memory_broker() -> Iterator[MemoryBroker]:
    """The broker on in-process ``memory://``, emptied; the test delivers its messages."""
    previous = app.conf.broker_url
    use_broker("memory://")
    broker = MemoryBroker()
    broker.drain()  # memory:// is process-wide: start from an empty broker
    # Nobody watches these runs; publishing every event would only compete for the CPU.
    broadcaster.drop_hook = lambda group, message: True
    try:
        yield broker
    finally:
        broadcaster.drop_hook = None
        use_broker(previous)
