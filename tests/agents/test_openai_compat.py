"""What the OpenAI-compatible provider puts on the wire, and how it reads the stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentmaestro.agents.providers import get_provider
from agentmaestro.agents.providers.base import Message, ModelRequest, ModelResponse, ToolSpec
from agentmaestro.agents.providers.openai_compat import OpenAICompatProvider
from agentmaestro.runs.engine.decide import RequestedToolCall
from tests.agents.conftest import OPENAI_KEY, provider_config, run_async
from tests.agents.fake_wire import Answer, Call, FakeModelServer

CONVERSATION = (
    Message("system", "You add numbers."),
    Message("user", "What is 2 + 3, and echo hi?"),
    Message(
        "assistant",
        "",
        tool_calls=(
            RequestedToolCall("call_a", "calculator", {"expression": "2 + 3"}),
            RequestedToolCall("call_b", "echo", {"value": "hi"}),
        ),
    ),
    Message("tool", '{"value": 5}', tool_call_id="call_a", name="calculator"),
    Message("tool", '{"echo": "hi"}', tool_call_id="call_b", name="echo"),
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
    server: FakeModelServer,
    answer: Answer,
    deltas: list[str] | None = None,
    use_async: bool = False,
    **settings: Any,
) -> ModelResponse:
    server.script(answer)
    request = ModelRequest(
        model="gpt-test",
        messages=CONVERSATION,
        tools=(CALCULATOR,),
        settings={"provider": "openai", **settings},
        turn=1,
        timeout_seconds=30,
    )
    sink = deltas.append if deltas is not None else (lambda _: None)
    provider = OpenAICompatProvider(provider_config(server))
    if use_async:
        return run_async(provider.acomplete(request, sink))
    return provider.complete(request, sink)


def test_it_is_registered_as_openai() -> None:
    assert isinstance(get_provider("openai"), OpenAICompatProvider)


@pytest.mark.parametrize("use_async", [False, True], ids=["complete", "acomplete"])
def test_the_conversation_goes_out_in_chat_completions_shape(
    openai_server: FakeModelServer, use_async: bool
) -> None:
    complete(
        openai_server, Answer(text="5 and hi"), use_async=use_async, temperature=0.2, max_tokens=64
    )
    (sent,) = openai_server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    body = sent.body
    assert body["model"] == "gpt-test"
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 64
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "You add numbers."},
        {"role": "user", "content": "What is 2 + 3, and echo hi?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "2 + 3"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "echo", "arguments": '{"value": "hi"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"value": 5}'},
        {"role": "tool", "tool_call_id": "call_b", "content": '{"echo": "hi"}'},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": "Evaluate an arithmetic expression.",
                "parameters": CALCULATOR.parameters,
            },
        }
    ]


@pytest.mark.parametrize("use_async", [False, True], ids=["complete", "acomplete"])
def test_unset_options_are_not_sent(openai_server: FakeModelServer, use_async: bool) -> None:
    complete(openai_server, Answer(text="ok"), use_async=use_async, stream=False)
    body = openai_server.requests[0].body
    assert "temperature" not in body
    assert "max_tokens" not in body
    assert "stream_options" not in body
    assert not body.get("stream")


@pytest.mark.parametrize("stream", [True, False])
def test_acomplete_sends_exactly_what_complete_sends(
    openai_server: FakeModelServer, stream: bool
) -> None:
    """acomplete posts its body without the SDK's request transform (openai_compat.py)."""
    complete(openai_server, Answer(text="ok"), stream=stream, temperature=0.5)
    (sync,) = openai_server.requests
    complete(openai_server, Answer(text="ok"), use_async=True, stream=stream, temperature=0.5)
    (async_,) = openai_server.requests
    assert (async_.path, async_.body) == (sync.path, sync.body)
    for header in ("authorization", "content-type", "accept"):
        assert async_.headers.get(header) == sync.headers.get(header), header


def test_text_streams_as_deltas_in_order(openai_server: FakeModelServer) -> None:
    deltas: list[str] = []
    response = complete(openai_server, Answer(text="The sum is 5."), deltas)
    assert deltas == ["The ", "sum ", "is ", "5."]
    assert response.text == "The sum is 5."


def test_streamed_tool_calls_are_assembled_from_fragments(openai_server: FakeModelServer) -> None:
    answer = Answer(
        text="Let me check.",
        calls=(
            Call("call_x", "calculator", json.dumps({"expression": "10 / 4"})),
            Call("call_y", "echo", json.dumps({"value": {"nested": [1, 2]}})),
        ),
        input_tokens=120,
        output_tokens=33,
    )
    response = complete(openai_server, answer)
    assert response.text == "Let me check."
    assert response.tool_calls == (
        RequestedToolCall("call_x", "calculator", {"expression": "10 / 4"}),
        RequestedToolCall("call_y", "echo", {"value": {"nested": [1, 2]}}),
    )
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 33)


@pytest.mark.parametrize("stream", [True, False])
def test_a_call_without_an_id_gets_one_from_the_turn(
    openai_server: FakeModelServer, stream: bool
) -> None:
    # Some local servers send no call ids; the engine still needs one to pair results.
    response = complete(openai_server, Answer(calls=(Call("", "echo", "{}"),)), stream=stream)
    assert response.tool_calls == (RequestedToolCall("call_1_0", "echo", {}),)
