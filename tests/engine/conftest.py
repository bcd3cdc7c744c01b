from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmaestro.celery import app
from tests.live import Worker, start_worker, stop_worker


@pytest.fixture(scope="session")
def engine_worker(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One real Celery worker process for the session, on a clean broker."""
    with app.connection_for_write() as conn:
        for queue in ("ticks", "activities"):
            conn.default_channel.queue_purge(queue)
    worker = start_worker(Path(tmp_path_factory.mktemp("worker")))
    yield worker
    stop_worker(worker)
