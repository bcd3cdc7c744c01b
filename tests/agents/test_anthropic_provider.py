"""What the Anthropic provider puts on the wire, and how it reads the event stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentmaestro.agents.providers import get_provider
from agentmaestro.agents.providers.anthropic_provider import AnthropicProvider
from agentmaestro.agents.providers.base import Message, ModelRequest, ModelResponse, ToolSpec
from agentmaestro.runs.engine.decide import RequestedToolCall
from tests.agents.conftest import ANTHROPIC_KEY, provider_config
from tests.agents.fake_wire import Answer, Call, FakeModelServer

CONVERSATION = (
    Message("system", "You add numbers."),
    Message("user", "What is 2 + 3, and echo hi?"),
    Message(
        "assistant",
        "Checking.",
        tool_calls=(
            RequestedToolCall("toolu_a", "calculator", {"expression": "2 + 3"}),
            RequestedToolCall("toolu_b", "echo", {"value": "hi"}),
        ),
    ),
    Message("tool", '{"value": 5}', tool_call_id="toolu_a", name="calculator"),
    Message("tool", '{"echo": "hi"}', tool_call_id="toolu_b", name="echo"),
)
CALCULATOR = ToolSpec(
    "calculator",
    "Evaluate an arithmetic expression.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
)


def complete(
    server: FakeModelServer, answer: Answer, deltas: list[str] | None = None, **settings: Any
) -> ModelResponse:
    server.script(answer)
    request = ModelRequest(
        model="claude-test",
        messages=CONVERSATION,
        tools=(CALCULATOR,),
        settings={"provider": "anthropic", **settings},
        timeout_seconds=30,
    )
    sink = deltas.append if deltas is not None else (lambda _: None)
    return AnthropicProvider(provider_config(server)).complete(request, sink)


def test_it_is_registered_as_anthropic() -> None:
    assert isinstance(get_provider("anthropic"), AnthropicProvider)


def test_the_conversation_goes_out_in_messages_shape(anthropic_server: FakeModelServer) -> None:
    complete(anthropic_server, Answer(text="5 and hi"), temperature=0.5)
    (sent,) = anthropic_server.requests
    assert sent.path == "/v1/messages"
    # This SDK version sends the key as a bearer token; older ones used x-api-key.
    auth = sent.headers.get("x-api-key") or sent.headers.get("authorization", "")
    assert auth.removeprefix("Bearer ") == ANTHROPIC_KEY
    assert "anthropic-version" in sent.headers
    body = sent.body
    assert body["model"] == "claude-test"
    assert body["system"] == "You add numbers."
    assert body["max_tokens"] == 4096
    assert body["temperature"] == 0.5  # via extra_body: this SDK's create() has no parameter
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "user", "content": "What is 2 + 3, and echo hi?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "calculator",
                    "input": {"expression": "2 + 3"},
                },
                {"type": "tool_use", "id": "toolu_b", "name": "echo", "input": {"value": "hi"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": '{"value": 5}'},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": '{"echo": "hi"}'},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression.",
            "input_schema": CALCULATOR.parameters,
        }
    ]


def test_max_tokens_comes_from_model_settings(anthropic_server: FakeModelServer) -> None:
    complete(anthropic_server, Answer(text="ok"), max_tokens=300, stream=False)
    body = anthropic_server.requests[0].body
    assert body["max_tokens"] == 300
    assert "temperature" not in body
    assert not body.get("stream")


def test_text_streams_as_deltas_in_order(anthropic_server: FakeModelServer) -> None:
    deltas: list[str] = []
    response = complete(anthropic_server, Answer(text="The sum is 5."), deltas)
    assert deltas == ["The ", "sum ", "is ", "5."]
    assert response.text == "The sum is 5."


@pytest.mark.parametrize("stream", [True, False])
def test_tool_use_blocks_become_tool_calls(anthropic_server: FakeModelServer, stream: bool) -> None:
    answer = Answer(
        text="Let me check.",
        calls=(
            Call("toolu_x", "calculator", json.dumps({"expression": "10 / 4"})),
            Call("toolu_y", "echo", json.dumps({"value": {"nested": [1, 2]}})),
        ),
        input_tokens=120,
        output_tokens=33,
    )
    response = complete(anthropic_server, answer, stream=stream)
    assert response.text == "Let me check."
    assert response.tool_calls == (
        RequestedToolCall("toolu_x", "calculator", {"expression": "10 / 4"}),
        RequestedToolCall("toolu_y", "echo", {"value": {"nested": [1, 2]}}),
    )
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 33)
