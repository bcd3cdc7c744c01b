"""An agent on the OpenAI-compatible provider, end to end under a real Celery worker.

The worker process calls the fake OpenAI server over HTTP exactly as it would call a
vLLM or OpenAI endpoint; only the far end of the wire is fake.
"""

from __future__ import annotations

import json

import pytest

from agentmaestro.agents.models import Agent
from agentmaestro.runs import dispatch
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.services.runs import run_create
from agentmaestro.tools.services import builtin_tools_install
from tests.agents.fake_wire import Answer, Call, FakeModelServer, error_reply
from tests.engine.helpers import wait_until_finished
from tests.factories import Personas
from tests.live import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def openai_agent(personas: Personas, server: FakeModelServer) -> Agent:
    builtin_tools_install(workspace=personas.workspace)
    return Agent.objects.create(
        workspace=personas.workspace,
        slug="openai",
        name="openai",
        system_prompt="You compute.",
        model_settings={
            "provider": "openai",
            "model": "gpt-test",
            "base_url": server.base_url,
            "timeout_seconds": 10,
        },
        tool_policy={"calculator": {"mode": "allow"}},
    )


def run_to_the_end(personas: Personas, agent: Agent, worker: Worker) -> AgentRun:
    run = run_create(agent=agent, input={"prompt": "What is 6 * 7?"}, created_by=personas.member)
    dispatch.enqueue_tick(run.id)
    return wait_until_finished(run, timeout=60)


def test_an_openai_agent_completes_a_tool_call_round_trip(
    personas: Personas, e2e_openai: FakeModelServer, provider_worker: Worker
) -> None:
    e2e_openai.script(
        Answer(
            text="Let me compute.",
            calls=(Call("call_calc_1", "calculator", json.dumps({"expression": "6 * 7"})),),
            input_tokens=50,
            output_tokens=10,
        ),
        Answer(text="The answer is 42.", input_tokens=80, output_tokens=6),
    )
    run = run_to_the_end(personas, openai_agent(personas, e2e_openai), provider_worker)

    assert run.status == "COMPLETED", (run.error, provider_worker.log()[-3000:])
    assert run.output == {"text": "The answer is 42."}
    assert (run.input_tokens, run.output_tokens) == (130, 16)
    steps = list(AgentStep.objects.filter(run=run).order_by("index").values_list("kind", "status"))
    assert steps == [
        ("MODEL_CALL", "COMPLETED"),
        ("TOOL_CALL", "COMPLETED"),
        ("OBSERVATION", "COMPLETED"),
        ("MODEL_CALL", "COMPLETED"),
        ("MESSAGE", "COMPLETED"),
    ]
    (call,) = ToolCall.objects.filter(run=run)
    assert (call.provider_call_id, call.tool_name, call.result) == (
        "call_calc_1",
        "calculator",
        {"value": 42},
    )

    first, second = (r.body for r in e2e_openai.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["calculator"]
    assert first["messages"] == [
        {"role": "system", "content": "You compute."},
        {"role": "user", "content": "What is 6 * 7?"},
    ]
    assistant, tool_result = second["messages"][2:]
    assert assistant["tool_calls"] == [
        {
            "id": "call_calc_1",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "6 * 7"}'},
        }
    ]
    assert tool_result["role"] == "tool"
    assert tool_result["tool_call_id"] == "call_calc_1"
    assert json.loads(tool_result["content"]) == {"value": 42}


def test_a_429_is_retried_by_the_task_after_retry_after(
    personas: Personas, e2e_openai: FakeModelServer, provider_worker: Worker
) -> None:
    e2e_openai.script(
        error_reply(
            "openai",
            429,
            "Rate limit reached",
            kind="rate_limit_error",
            headers=(("retry-after", "1"),),
        ),
        Answer(text="Made it."),
    )
    run = run_to_the_end(personas, openai_agent(personas, e2e_openai), provider_worker)

    assert run.status == "COMPLETED", (run.error, provider_worker.log()[-3000:])
    assert run.output == {"text": "Made it."}
    refused, accepted = e2e_openai.requests
    assert accepted.at - refused.at >= 0.9, "the retry did not wait for Retry-After"
    model_step = AgentStep.objects.get(run=run, kind="MODEL_CALL")
    assert model_step.attempt == 2


def test_a_permanent_provider_error_fails_the_run_without_retrying(
    personas: Personas, e2e_openai: FakeModelServer, provider_worker: Worker
) -> None:
    e2e_openai.script(error_reply("openai", 401, "Incorrect API key provided"))
    run = run_to_the_end(personas, openai_agent(personas, e2e_openai), provider_worker)

    assert run.status == "FAILED", provider_worker.log()[-3000:]
    assert len(e2e_openai.requests) == 1
    step = AgentStep.objects.get(run=run, kind="MODEL_CALL")
    assert step.payload["error"]["code"] == "provider_auth"
