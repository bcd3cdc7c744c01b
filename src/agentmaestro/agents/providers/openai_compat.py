"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, LM Studio, …) on the ``openai`` SDK.

``model_settings = {"provider": "openai", "model": "gpt-4o-mini", "base_url": …,
"temperature": 0.2, "max_tokens": 1024, "timeout_seconds": 60, "stream": true}``; the key
comes from ``OPENAI_API_KEY`` (see config.py and docs/providers.md).

Settings checks, status mapping and Retry-After parsing are shared with the Anthropic
provider (_common.py).
The SDK never retries (``max_retries=0``): a transient ProviderError goes back to the
activity (the Celery task, or the worker's model-call executor), which releases the call
and retries with backoff. ``acomplete`` is the same call on the SDK's async client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentmaestro.agents.providers._common import (
    AsyncClientPool,
    CallSettings,
    ClientCache,
    Deadline,
    aread_stream,
    bad_data_is_malformed,
    call_settings,
    connection_error,
    malformed,
    parse_arguments,
    read_stream,
    resolve_config,
    status_error,
    timed_out,
)
from agentmaestro.agents.providers.base import (
    DeltaSink,
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ToolSpec,
    Usage,
)
from agentmaestro.config import Config
from agentmaestro.runs.engine.decide import RequestedToolCall

if TYPE_CHECKING:
    # The SDKs take seconds to import; every web and worker process imports this package,
    # so they are imported on the first call instead.
    import openai


def _make_client(settings: CallSettings) -> openai.OpenAI:
    import openai

    return openai.OpenAI(api_key=settings.api_key, base_url=settings.base_url, max_retries=0)


def _make_async_client(settings: CallSettings, aiohttp: bool) -> openai.AsyncOpenAI:
    import openai

    return openai.AsyncOpenAI(
        api_key=settings.api_key,
        base_url=settings.base_url,
        max_retries=0,
        http_client=openai.DefaultAioHttpClient() if aiohttp else None,
    )


_clients = ClientCache(_make_client)
_async_clients = AsyncClientPool(_make_async_client)


PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAICompatProvider:
    def __init__(self, config: Config | None = None) -> None:
        self._config = resolve_config(config)

    def complete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse:
        settings, params = self._prepare(request)
        client = _clients.get(settings)  # first call: imports the SDK, not on the clock
        deadline = Deadline(settings.timeout)
        with _sdk_errors_mapped():
            if not settings.stream:
                completion = client.chat.completions.create(**params, timeout=settings.timeout)
                with bad_data_is_malformed(PROVIDER):
                    return _read_completion(completion, on_delta, request.turn)
            stream = client.chat.completions.create(
                **params,
                stream=True,
                stream_options={"include_usage": True},
                timeout=settings.timeout,
            )
            with stream, bad_data_is_malformed(PROVIDER):
                return read_stream(stream, _StreamReader(on_delta, request.turn), deadline)

    async def acomplete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse:
        """``complete`` on the SDK's async client: the same request, errors and result."""
        settings, params = self._prepare(request)
        deadline = Deadline(settings.timeout)
        async with _async_clients.client(settings) as client:
            with _sdk_errors_mapped():
                if not settings.stream:
                    completion = await _post_chat(client, params, settings.timeout, False)
                    with bad_data_is_malformed(PROVIDER):
                        return _read_completion(completion, on_delta, request.turn)
                params = {**params, "stream": True, "stream_options": {"include_usage": True}}
                stream = await _post_chat(client, params, settings.timeout, True)
                async with stream:
                    with bad_data_is_malformed(PROVIDER):
                        reader = _StreamReader(on_delta, request.turn)
                        return await aread_stream(stream, reader, deadline)

    def _prepare(self, request: ModelRequest) -> tuple[CallSettings, dict[str, Any]]:
        key = self._config.openai_api_key
        settings = call_settings(
            request,
            provider=PROVIDER,
            api_key=key.get_secret_value() if key else None,
            default_base_url=self._config.openai_base_url or DEFAULT_BASE_URL,
            allowed_base_urls=self._config.model_base_urls,
        )
        params: dict[str, Any] = {
            "model": settings.model,
            "messages": [_wire_message(m) for m in request.messages],
        }
        if request.tools:
            params["tools"] = [_wire_tool(t) for t in request.tools]
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            params["max_tokens"] = settings.max_tokens
        return settings, params


async def _post_chat(
    client: openai.AsyncOpenAI, body: dict[str, Any], seconds: float, stream: bool
) -> Any:
    """``client.chat.completions.create(**body)``, minus its request transform.

    ``create`` first walks the body against the SDK's TypedDict annotations to rename
    and reformat fields; ours are plain JSON it leaves as they are, and the walk cost a
    quarter of each call's SDK time in the activities worker (py-spy, bench/engine.py's
    concurrency case). So the body is posted as ``create`` posts it: the same path,
    auth, timeout, response types and stream class (tests/agents check the request is
    the same as the sync client's).
    """
    from openai import AsyncStream
    from openai._base_client import make_request_options
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    return await client.post(
        "/chat/completions",
        body=body,
        options=make_request_options(timeout=seconds, security={"bearer_auth": True}),
        cast_to=ChatCompletion,
        stream=stream,
        stream_cls=AsyncStream[ChatCompletionChunk],
    )


@contextmanager
def _sdk_errors_mapped() -> Iterator[None]:
    import openai

    try:
        yield
    except openai.APIStatusError as error:
        raise status_error(
            PROVIDER, error.status_code, error.response.headers, error.body, error.message
        ) from error
    except openai.APITimeoutError as error:
        raise connection_error(PROVIDER, error, timeout=timed_out(error)) from error
    except openai.APIConnectionError as error:
        raise connection_error(PROVIDER, error, timeout=False) from error
    except openai.APIResponseValidationError as error:
        malformed(PROVIDER, error.message)
    except json.JSONDecodeError as error:  # the SDK decodes a non-streamed body itself
        malformed(PROVIDER, f"the body is not JSON ({error.msg})")
    except openai.APIError as error:  # an error object inside a 200 stream
        raise status_error(PROVIDER, 200, {}, error.body, error.message) from error


def _wire_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.provider_call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _wire_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters or {"type": "object", "properties": {}},
        },
    }


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _StreamReader:
    """Assembles a streamed turn chunk by chunk (the sync and async loops share it)."""

    def __init__(self, on_delta: DeltaSink, turn: int) -> None:
        self._on_delta = on_delta
        self._turn = turn
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._usage = Usage()
        self._finished = False

    def feed(self, chunk: object) -> None:
        from openai.types.chat import ChatCompletionChunk

        if not isinstance(chunk, ChatCompletionChunk):
            malformed(PROVIDER, "a stream chunk is not a JSON object")
        if chunk.usage is not None:
            self._usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                self._text.append(delta.content)
                self._on_delta(delta.content)
            for part in delta.tool_calls or ():
                calls = self._calls
                partial = calls.setdefault(
                    part.index if part.index is not None else len(calls), _PartialCall()
                )
                partial.id = partial.id or (part.id or "")
                if part.function is not None:
                    partial.name = partial.name or (part.function.name or "")
                    partial.arguments.append(part.function.arguments or "")
            if choice.finish_reason is not None:
                self._finished = True

    def finish(self) -> ModelResponse:
        if not self._finished:
            raise ProviderError(
                "provider_connection",
                f"The {PROVIDER} stream ended before the model finished its turn.",
                transient=True,
            )
        calls = self._calls
        return ModelResponse(
            text="".join(self._text),
            tool_calls=tuple(
                _requested_call(self._turn, i, p.id, p.name, "".join(p.arguments))
                for i, p in enumerate(calls[k] for k in sorted(calls))
            ),
            usage=self._usage,
        )


def _read_completion(completion: object, on_delta: DeltaSink, turn: int) -> ModelResponse:
    from openai.types.chat import ChatCompletion

    if not isinstance(completion, ChatCompletion):
        malformed(PROVIDER, "the body is not a JSON object")
    if not completion.choices:
        malformed(PROVIDER, "no choices")
    message = completion.choices[0].message
    text = message.content or ""
    if text:
        on_delta(text)
    calls = tuple(
        _requested_call(turn, i, call.id, call.function.name, call.function.arguments)
        for i, call in enumerate(message.tool_calls or ())
        if call.type == "function"
    )
    usage = completion.usage
    return ModelResponse(
        text=text,
        tool_calls=calls,
        usage=Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else Usage(),
    )


def _requested_call(
    turn: int, index: int, call_id: str | None, name: str | None, arguments: object
) -> RequestedToolCall:
    if not name:
        malformed(PROVIDER, f"tool call {index} has no function name")
    return RequestedToolCall(
        # Some local servers send no ids; the engine needs one to pair the result with.
        provider_call_id=call_id or f"call_{turn}_{index}",
        name=name,
        arguments=parse_arguments(PROVIDER, name, arguments),
    )
