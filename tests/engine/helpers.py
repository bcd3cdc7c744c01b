from __future__ import annotations

import time
from typing import Any

import kombu.pools

from agentmaestro.agents.models import Agent
from agentmaestro.celery import app as celery_app
from agentmaestro.common import broker
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.states import TERMINAL_STATUSES
from agentmaestro.tools.services import builtin_tools_install
from agentmaestro.workspaces.models import Workspace

ALL_BUILTINS = {
    "calculator": {"mode": "allow"},
    "echo": {"mode": "allow"},
    "current_time": {"mode": "allow"},
}


def scripted_agent(
    workspace: Workspace, script: list[dict[str, Any]], slug: str = "scripted", **fields: Any
) -> Agent:
    builtin_tools_install(workspace=workspace)
    return Agent.objects.create(
        workspace=workspace,
        slug=slug,
        name=slug,
        model_settings={"provider": "scripted", "script": script},
        tool_policy=fields.pop("tool_policy", ALL_BUILTINS),
        **fields,
    )


def wait_until_finished(run: AgentRun, timeout: float = 30) -> AgentRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in {s.value for s in TERMINAL_STATUSES}:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run.id} still {run.status} after {timeout}s")


def use_broker(url: str) -> None:
    """Point the test process's Celery app at ``url``, with fresh connection pools."""
    kombu.pools.reset()
    # Celery caches the pools of the URL it first used, and has no public way to drop them.
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]
    celery_app.conf.update(broker_url=url, broker_transport=broker.transport_for(url))


class MemoryBroker:
    """The Celery app pointed at ``memory://``; the test delivers the messages itself."""

    def drain(self) -> list[tuple[str, Any]]:
        """Every message waiting, as (task name, first argument), oldest first."""
        messages = []
        with celery_app.connection_for_write() as conn:
            channel: Any = conn.default_channel  # (the stubs lack basic_get)
            for name in ("ticks", "activities"):
                while (message := channel.basic_get(name, no_ack=True)) is not None:
                    messages.append((message.headers["task"], message.decode()[0][0]))
        return messages
