"""One contract, every model provider: the engine may not tell them apart.

Each implementation gets a harness that arranges an outcome its own way (a script for
``scripted``, wire replies from a local fake server for the real ones) and the same
assertions run against all of them. The real providers run twice, streaming and not,
and every provider is asked both ways: ``complete`` (a Celery thread) and ``acomplete``
(the worker's model-call executor, on an event loop).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from agentmaestro.agents.providers.anthropic_provider import AnthropicProvider
from agentmaestro.agents.providers.base import (
    AsyncModelProvider,
    Message,
    ModelProvider,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ToolSpec,
)
from agentmaestro.agents.providers.openai_compat import OpenAICompatProvider
from agentmaestro.agents.providers.scripted import ScriptedProvider
from tests.agents.conftest import provider_config, run_async
from tests.agents.fake_wire import Answer, Call, FakeModelServer, error_reply

TEXT = "Hello, streaming world! Two  spaces and\na newline."
CALLS = [
    ("calculator", {"expression": "6 * 7"}),
    ("echo", {"value": ["a", {"b": 1}]}),
]
TOOLS = (
    ToolSpec(
        "calculator",
        "Evaluate an arithmetic expression.",
        {"type": "object", "properties": {"expression": {"type": "string"}}},
    ),
    ToolSpec("echo", "Echo a value.", {"type": "object", "properties": {"value": {}}}),
)


class Harness(Protocol):
    use_async: bool

    def provider(self) -> ModelProvider: ...

    def text(self, text: str) -> dict[str, Any]: ...

    def tool_calls(self, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]: ...

    def refused(self) -> dict[str, Any]: ...

    def overloaded(self) -> dict[str, Any] | None: ...


@dataclass
class ScriptedHarness:
    use_async: bool = False

    def provider(self) -> ModelProvider:
        return ScriptedProvider()

    def text(self, text: str) -> dict[str, Any]:
        return {"provider": "scripted", "script": [{"text": text}]}

    def tool_calls(self, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        turn = {"tool_calls": [{"name": n, "arguments": a} for n, a in calls]}
        return {"provider": "scripted", "script": [turn]}

    def refused(self) -> dict[str, Any]:
        return {"provider": "scripted", "script": ["not an object"]}

    def overloaded(self) -> dict[str, Any] | None:
        return None  # a script cannot be overloaded


@dataclass
class WireHarness:
    server: FakeModelServer
    stream: bool
    kind: type[OpenAICompatProvider] | type[AnthropicProvider]
    use_async: bool = False
    ids: Iterator[int] = field(default_factory=lambda: iter(range(100)))

    def provider(self) -> ModelProvider:
        return self.kind(provider_config(self.server))

    def _settings(self) -> dict[str, Any]:
        return {"provider": self.server.dialect, "model": "m-test", "stream": self.stream}

    def text(self, text: str) -> dict[str, Any]:
        self.server.script(Answer(text=text))
        return self._settings()

    def tool_calls(self, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        self.server.script(
            Answer(
                calls=tuple(
                    Call(f"call_{next(self.ids)}", name, json.dumps(args)) for name, args in calls
                )
            )
        )
        return self._settings()

    def refused(self) -> dict[str, Any]:
        self.server.script(error_reply(self.server.dialect, 400, "messages: field required"))
        return self._settings()

    def overloaded(self) -> dict[str, Any] | None:
        self.server.script(
            error_reply(
                self.server.dialect,
                429,
                "slow down",
                kind="rate_limit_error",
                headers=(("retry-after", "3"),),
            )
        )
        return self._settings()


@pytest.fixture(
    params=[
        f"{name}-{way}"
        for name in (
            "scripted",
            "openai-stream",
            "openai-json",
            "anthropic-stream",
            "anthropic-json",
        )
        for way in ("sync", "async")
    ]
)
def harness(request: pytest.FixtureRequest) -> Harness:
    name, way = str(request.param).rsplit("-", 1)
    use_async = way == "async"
    if name == "scripted":
        return ScriptedHarness(use_async)
    dialect, form = name.split("-")
    server: FakeModelServer = request.getfixturevalue(f"{dialect}_server")
    kind = OpenAICompatProvider if dialect == "openai" else AnthropicProvider
    return WireHarness(server, form == "stream", kind, use_async)


def ask(harness: Harness, settings: dict[str, Any]) -> tuple[ModelResponse, list[str]]:
    deltas: list[str] = []
    request = ModelRequest(
        model=str(settings.get("model", "")),
        messages=(Message("system", "Be brief."), Message("user", "Say hello, then compute.")),
        tools=TOOLS,
        settings=settings,
        timeout_seconds=30,
    )
    provider = harness.provider()
    if not harness.use_async:
        return provider.complete(request, deltas.append), deltas
    assert isinstance(provider, AsyncModelProvider)
    return run_async(provider.acomplete(request, deltas.append)), deltas


def test_the_deltas_concatenate_to_the_text(harness: Harness) -> None:
    response, deltas = ask(harness, harness.text(TEXT))
    assert response.text == TEXT
    assert response.tool_calls == ()
    assert deltas
    assert "".join(deltas) == TEXT


def test_parallel_tool_calls_come_back_with_ids_names_and_arguments(harness: Harness) -> None:
    response, _ = ask(harness, harness.tool_calls(CALLS))
    assert [(c.name, c.arguments) for c in response.tool_calls] == CALLS
    ids = [c.provider_call_id for c in response.tool_calls]
    assert all(ids)
    assert len(set(ids)) == 2


def test_usage_is_reported(harness: Harness) -> None:
    response, _ = ask(harness, harness.text(TEXT))
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0


def test_a_refused_request_is_a_permanent_provider_error(harness: Harness) -> None:
    with pytest.raises(ProviderError) as raised:
        ask(harness, harness.refused())
    assert raised.value.transient is False
    assert raised.value.code
    assert raised.value.message


def test_an_overloaded_provider_is_a_transient_provider_error(harness: Harness) -> None:
    settings = harness.overloaded()
    if settings is None:
        pytest.skip("this provider cannot be overloaded")
    with pytest.raises(ProviderError) as raised:
        ask(harness, settings)
    assert raised.value.transient is True
    assert raised.value.retry_after == 3
