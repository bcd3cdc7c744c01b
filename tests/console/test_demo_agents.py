"""The demo agents show what they say they show, run by a real worker process."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from agentmaestro.agents.models import Agent
from agentmaestro.config import Config
from agentmaestro.console.demo import demo_agents, seed_demo
from agentmaestro.runs import dispatch
from agentmaestro.runs.models import AgentRun, AgentStep
from agentmaestro.runs.services.runs import run_create
from tests.engine.helpers import wait_until_finished
from tests.live import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def run_demo(slug: str) -> AgentRun:
    seed = seed_demo()
    agent = Agent.objects.get(workspace=seed.workspace, slug=slug)
    run = run_create(agent=agent, input={"prompt": "show me"}, created_by=seed.user)
    dispatch.enqueue_tick(run.id)
    return run


def observations(run: AgentRun) -> list[dict[str, object]]:
    return [
        step.payload
        for step in AgentStep.objects.filter(run=run, kind="OBSERVATION").order_by("index")
    ]


def test_the_demo_agents_do_what_their_descriptions_say(engine_worker: Worker) -> None:
    runs = {slug: run_demo(slug) for slug in ("demo-agent", "flaky-tool", "over-budget")}
    done = {slug: wait_until_finished(run, timeout=60) for slug, run in runs.items()}

    demo = done["demo-agent"]
    assert demo.status == "COMPLETED", (demo.error, engine_worker.log()[-2000:])
    assert [o["tool_name"] for o in observations(demo)] == [
        "calculator",
        "current_time",
        "calculator",
        "echo",
    ]

    flaky = done["flaky-tool"]
    assert flaky.status == "COMPLETED", flaky.error
    first, second = observations(flaky)
    assert first["error"] == {"code": "division_by_zero", "message": "Division by zero."}
    assert second["result"] == {"value": 30.0}
    assert flaky.output == {"text": "Each of the 4 guests pays 30."}

    budget = done["over-budget"]
    assert budget.status == "FAILED"
    assert budget.error is not None
    assert budget.error["code"] == "budget_tool_calls"
    assert len(observations(budget)) == 3


def test_an_assistant_agent_appears_only_with_a_model_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert "assistant" not in {a.slug for a in demo_agents(Config())}

    openai = {a.slug: a for a in demo_agents(Config(OPENAI_API_KEY=SecretStr("sk-test")))}
    assert openai["assistant"].model_settings == {"provider": "openai", "model": "gpt-4o-mini"}

    anthropic = demo_agents(
        Config(ANTHROPIC_API_KEY=SecretStr("key"), AGENTMAESTRO_ASSISTANT_MODEL="claude-x")
    )
    assistant = {a.slug: a for a in anthropic}["assistant"]
    assert assistant.model_settings == {"provider": "anthropic", "model": "claude-x"}
