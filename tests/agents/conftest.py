"""Fake provider servers and a provider config for the provider tests.

The end-to-end tests run model calls in worker processes, which read their keys and
allowed base URLs from the environment when they start. Any worker of the session may
take those calls (including ``engine_worker`` from tests/engine), so the environment is
set here, at collection, before any worker starts; and the end-to-end fake server is
bound now so its address can be allowed. The keys are fake: a developer's real key must
never be sent to the fake server.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from agentmaestro.agents.providers._common import close_async_clients
from agentmaestro.celery import app
from agentmaestro.config import Config
from tests.agents.fake_wire import Dialect, FakeModelServer
from tests.live import Worker, start_worker, stop_worker

OPENAI_KEY = "sk-test-openai-key"
ANTHROPIC_KEY = "sk-ant-test-key"

E2E_OPENAI = FakeModelServer("openai")

os.environ["OPENAI_API_KEY"] = OPENAI_KEY
os.environ["ANTHROPIC_API_KEY"] = ANTHROPIC_KEY
os.environ.pop("OPENAI_BASE_URL", None)
os.environ.pop("ANTHROPIC_BASE_URL", None)
os.environ["AGENTMAESTRO_MODEL_BASE_URLS"] = E2E_OPENAI.base_url


def run_async[T](call: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(call)``, closing the SDK clients it opened before the loop closes."""

    async def and_close() -> T:
        try:
            return await call
        finally:
            await close_async_clients()

    return asyncio.run(and_close())


def provider_config(server: FakeModelServer, **overrides: object) -> Config:
    """The configuration an operator writes for this server: key and base URL."""
    env: dict[str, object] = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "AGENTMAESTRO_MODEL_BASE_URLS": "",
        f"{server.dialect.upper()}_BASE_URL": server.base_url,
        **overrides,
    }
    return Config(**env)  # type: ignore[arg-type]


def _serve(dialect: Dialect) -> Iterator[FakeModelServer]:
    server = FakeModelServer(dialect).start()
    yield server
    server.stop()


@pytest.fixture
def openai_server() -> Iterator[FakeModelServer]:
    yield from _serve("openai")


@pytest.fixture
def anthropic_server() -> Iterator[FakeModelServer]:
    yield from _serve("anthropic")


@pytest.fixture
def e2e_openai() -> FakeModelServer:
    E2E_OPENAI.start()
    E2E_OPENAI.script()
    return E2E_OPENAI


@pytest.fixture(scope="module")
def provider_worker(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """A real Celery worker process, started after the environment above was set."""
    with app.connection_for_write() as conn:
        for queue in ("ticks", "activities"):
            conn.default_channel.queue_purge(queue)
    worker = start_worker(tmp_path_factory.mktemp("provider-worker"), name="providers")
    yield worker
    stop_worker(worker)
