"""How each real provider turns what goes wrong on the wire into a ProviderError.

Transient errors (the Celery task retries them) versus permanent ones (the step fails),
the codes in docs/providers.md, and the SDK doing no retries of its own — through
``complete`` and ``acomplete`` alike.
"""

from __future__ import annotations

import email.utils
import json
import sys
import time
from typing import Any

import httpx
import pytest

from agentmaestro.agents.providers._common import retry_after_seconds
from agentmaestro.agents.providers.anthropic_provider import AnthropicProvider
from agentmaestro.agents.providers.base import Message, ModelRequest, ModelResponse, ProviderError
from agentmaestro.agents.providers.openai_compat import OpenAICompatProvider
from tests.agents.conftest import provider_config, run_async
from tests.agents.fake_wire import (
    Answer,
    Call,
    FakeModelServer,
    Raw,
    Reply,
    Slow,
    error_reply,
    sse,
)
from tests.live import free_port

# Whether ``call`` goes through ``acomplete`` (the executor's way) instead of ``complete``.
use_async = False


@pytest.fixture(params=["openai-sync", "openai-async", "anthropic-sync", "anthropic-async"])
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FakeModelServer:
    dialect, way = str(request.param).split("-")
    monkeypatch.setattr(sys.modules[__name__], "use_async", way == "async")
    server: FakeModelServer = request.getfixturevalue(f"{dialect}_server")
    return server


def call(
    server: FakeModelServer,
    *replies: Reply,
    stream: bool = True,
    timeout: float = 30,
    config_overrides: dict[str, object] | None = None,
    **settings: Any,
) -> ModelResponse:
    server.script(*replies)
    config = provider_config(server, **(config_overrides or {}))
    provider = (
        OpenAICompatProvider(config) if server.dialect == "openai" else AnthropicProvider(config)
    )
    request = ModelRequest(
        model=settings.pop("model", "m-test"),
        messages=(Message("user", "hi"),),
        tools=(),
        settings={"stream": stream, **settings},
        timeout_seconds=timeout,
    )
    if use_async:
        return run_async(provider.acomplete(request, lambda _: None))
    return provider.complete(request, lambda _: None)


def failure(server: FakeModelServer, *replies: Reply, **kwargs: Any) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        call(server, *replies, **kwargs)
    return raised.value


# HTTP status answers ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_429_is_transient_and_carries_retry_after(server: FakeModelServer, stream: bool) -> None:
    reply = error_reply(
        server.dialect,
        429,
        "Rate limit reached",
        kind="rate_limit_error",
        headers=(("retry-after", "7"),),
    )
    error = failure(server, reply, stream=stream)
    assert (error.code, error.transient, error.retry_after) == ("provider_rate_limited", True, 7)
    assert "Rate limit reached" in error.message


def test_429_without_retry_after_leaves_the_backoff_to_the_task(server: FakeModelServer) -> None:
    error = failure(server, error_reply(server.dialect, 429, "slow down", kind="rate_limit_error"))
    assert (error.code, error.transient, error.retry_after) == ("provider_rate_limited", True, None)


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_server_errors_are_transient_and_the_sdk_does_not_retry(
    server: FakeModelServer, status: int
) -> None:
    error = failure(server, error_reply(server.dialect, status, "upstream broke", kind="api_error"))
    assert (error.code, error.transient) == ("provider_unavailable", True)
    assert len(server.requests) == 1, "the SDK retried by itself; the Celery task must do it"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "provider_bad_request"),
        (401, "provider_auth"),
        (403, "provider_permission"),
        (404, "provider_not_found"),
        (413, "provider_request_too_large"),
        (422, "provider_bad_request"),
    ],
)
def test_other_client_errors_are_permanent_with_a_stable_code(
    server: FakeModelServer, status: int, code: str
) -> None:
    error = failure(server, error_reply(server.dialect, status, "no"))
    assert (error.code, error.transient) == (code, False)
    assert len(server.requests) == 1


def test_an_exhausted_openai_quota_is_not_retried(openai_server: FakeModelServer) -> None:
    reply = error_reply(
        "openai",
        429,
        "You exceeded your current quota",
        kind="insufficient_quota",
        code="insufficient_quota",
    )
    error = failure(openai_server, reply)
    assert (error.code, error.transient) == ("provider_quota", False)


def test_retry_after_may_be_an_http_date_or_milliseconds() -> None:
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 < (retry_after_seconds(httpx.Headers({"retry-after": in_ten})) or 0) <= 10
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None


# Errors reported inside a stream -------------------------------------------------------


def test_an_overloaded_error_event_mid_stream_is_transient(
    anthropic_server: FakeModelServer,
) -> None:
    events = (
        sse("message_start", {"type": "message_start", "message": _anthropic_message()}),
        sse(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
    )
    error = failure(anthropic_server, Raw(200, events=events))
    assert (error.code, error.transient) == ("provider_unavailable", True)


def test_an_invalid_request_error_event_mid_stream_is_permanent(
    anthropic_server: FakeModelServer,
) -> None:
    events = (
        sse("error", {"type": "error", "error": {"type": "invalid_request_error", "message": "x"}}),
    )
    error = failure(anthropic_server, Raw(200, events=events))
    assert error.transient is False


def test_an_error_chunk_in_an_openai_stream_is_mapped(openai_server: FakeModelServer) -> None:
    events = ('data: {"error": {"message": "server overloaded", "type": "server_error"}}\n\n',)
    error = failure(openai_server, Raw(200, events=events))
    assert (error.code, error.transient) == ("provider_unavailable", True)


# Malformed answers ---------------------------------------------------------------------


def test_a_body_that_is_not_json_is_malformed(server: FakeModelServer) -> None:
    error = failure(server, Raw(200, "{not json"), stream=False)
    assert (error.code, error.transient) == ("malformed_response", False)


def test_an_html_page_instead_of_json_is_malformed(server: FakeModelServer) -> None:
    error = failure(server, Raw(200, "<html>proxy</html>", content_type="text/html"), stream=False)
    assert (error.code, error.transient) == ("malformed_response", False)


def test_a_json_body_missing_its_fields_is_malformed(server: FakeModelServer) -> None:
    error = failure(server, Raw(200, json.dumps({"id": "x"})), stream=False)
    assert (error.code, error.transient) == ("malformed_response", False)


def test_a_stream_event_that_is_not_json_is_malformed(server: FakeModelServer) -> None:
    event = (
        "data: {oops\n\n" if server.dialect == "openai" else "event: message_start\ndata: {oops\n\n"
    )
    error = failure(server, Raw(200, events=(event,)))
    assert (error.code, error.transient) == ("malformed_response", False)


@pytest.mark.parametrize("stream", [True, False])
def test_tool_arguments_that_are_not_json_are_malformed(
    openai_server: FakeModelServer, stream: bool
) -> None:
    answer = Answer(calls=(Call("call_1", "calculator", '{"expression": "1 +'),))
    error = failure(openai_server, answer, stream=stream)
    assert (error.code, error.transient) == ("malformed_response", False)
    assert "calculator" in error.message


def test_streamed_tool_input_that_is_not_json_is_malformed(
    anthropic_server: FakeModelServer,
) -> None:
    answer = Answer(calls=(Call("toolu_1", "calculator", '{"expression": "1 +'),))
    error = failure(anthropic_server, answer)
    assert (error.code, error.transient) == ("malformed_response", False)


def test_tool_arguments_that_are_json_but_not_an_object_are_malformed(
    openai_server: FakeModelServer,
) -> None:
    error = failure(openai_server, Answer(calls=(Call("call_1", "echo", "[1, 2]"),)))
    assert (error.code, error.transient) == ("malformed_response", False)


def test_a_stream_cut_off_before_the_turn_ends_is_transient(server: FakeModelServer) -> None:
    if server.dialect == "openai":
        first = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
        }
        events = (f"data: {json.dumps(first)}\n\n",)
    else:
        events = (sse("message_start", {"type": "message_start", "message": _anthropic_message()}),)
    error = failure(server, Raw(200, events=events))
    assert (error.code, error.transient) == ("provider_connection", True)


# Time and connections ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_a_server_silent_past_the_timeout_is_a_transient_timeout(
    server: FakeModelServer, stream: bool
) -> None:
    started = time.monotonic()
    error = failure(server, Slow(8.0, Answer(text="too late")), stream=stream, timeout=0.3)
    assert (error.code, error.transient) == ("provider_timeout", True)
    assert time.monotonic() - started < 6, "it waited for the server"
    assert len(server.requests) == 1


def test_a_stream_that_stalls_past_the_timeout_is_a_transient_timeout(
    server: FakeModelServer,
) -> None:
    started = time.monotonic()
    answer = Answer(text="a b c", stall_after_first_event=8.0)
    error = failure(server, answer, timeout=0.3)
    assert (error.code, error.transient) == ("provider_timeout", True)
    assert time.monotonic() - started < 6, "it waited for the server"


def test_a_server_that_is_not_there_is_a_transient_connection_error(
    server: FakeModelServer,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    base = nowhere + "/v1" if server.dialect == "openai" else nowhere
    key = "OPENAI_BASE_URL" if server.dialect == "openai" else "ANTHROPIC_BASE_URL"
    error = failure(server, config_overrides={key: base})
    assert (error.code, error.transient) == ("provider_connection", True)


# Configuration -------------------------------------------------------------------------


def test_a_missing_key_is_a_clear_permanent_error(server: FakeModelServer) -> None:
    key = f"{server.dialect.upper()}_API_KEY"
    error = failure(server, Answer(text="hi"), config_overrides={key: None})
    assert (error.code, error.transient) == ("provider_missing_key", False)
    assert key in error.message
    assert server.requests == []


def test_a_key_in_model_settings_is_refused(server: FakeModelServer) -> None:
    error = failure(server, Answer(text="hi"), api_key="sk-in-the-database")
    assert (error.code, error.transient) == ("provider_config", False)
    assert "sk-in-the-database" not in error.message
    assert server.requests == []


def test_the_key_is_never_sent_to_a_base_url_that_is_not_allowed(server: FakeModelServer) -> None:
    elsewhere = f"http://127.0.0.1:{free_port()}"
    error = failure(server, Answer(text="hi"), base_url=elsewhere)
    assert (error.code, error.transient) == ("provider_base_url_not_allowed", False)


def test_an_agent_may_name_an_allowed_base_url(server: FakeModelServer) -> None:
    key = "OPENAI_BASE_URL" if server.dialect == "openai" else "ANTHROPIC_BASE_URL"
    overrides = {key: None, "AGENTMAESTRO_MODEL_BASE_URLS": f"https://x.test,{server.base_url}/"}
    response = call(server, Answer(text="hi"), config_overrides=overrides, base_url=server.base_url)
    assert response.text == "hi"


@pytest.mark.parametrize(
    "settings",
    [
        {"model": ""},
        {"temperature": "hot"},
        {"max_tokens": 1.5},
        {"stream": "yes"},
        {"base_url": "ftp://x"},
    ],
)
def test_invalid_model_settings_are_permanent_errors(
    server: FakeModelServer, settings: dict[str, Any]
) -> None:
    error = failure(server, Answer(text="hi"), **settings)
    assert (error.code, error.transient) == ("provider_config", False)
    assert server.requests == []


def _anthropic_message() -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
