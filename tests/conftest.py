"""Fixtures shared by the whole suite, and the replay invariant checked after every test.

After each test that touched the database, every run in it must satisfy
``fold(events) == run_snapshot(run)``; a mismatch fails the test with a diff.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmaestro.celery import app as celery_app
from tests.factories import Personas, make_personas
from tests.live import LiveServer, Worker, run_live_server, start_worker, stop_worker
from tests.replay import assert_all_runs_replay


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    result = yield
    uses_db = item.get_closest_marker("django_db") is not None or any(
        name in getattr(item, "fixturenames", ()) for name in ("db", "transactional_db")
    )
    if uses_db and item.get_closest_marker("replay_exempt") is None:
        assert_all_runs_replay()
    return result


@pytest.fixture
def personas(db: None) -> Personas:
    return make_personas()


@pytest.fixture(scope="session")
def web_server(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One real web process for the session (heartbeat every second, to keep tests quick)."""
    with run_live_server(
        tmp_path_factory.mktemp("live"), AGENTMAESTRO_WS_HEARTBEAT_SECONDS="1"
    ) as server:
        yield server


@pytest.fixture(scope="session")
def engine_worker(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One real Celery worker process for the session, on a clean broker."""
    with celery_app.connection_for_write() as conn:
        for queue in ("ticks", "activities"):
            conn.default_channel.queue_purge(queue)
    worker = start_worker(Path(tmp_path_factory.mktemp("worker")))
    yield worker
    stop_worker(worker)
