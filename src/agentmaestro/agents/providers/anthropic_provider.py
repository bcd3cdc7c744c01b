"""Anthropic's messages API on the ``anthropic`` SDK, tool use included.

``model_settings = {"provider": "anthropic", "model": "claude-sonnet-4-5", "max_tokens":
4096, "temperature": 0.2, "timeout_seconds": 60, "stream": true}``; the key comes from
``ANTHROPIC_API_KEY`` (see config.py and docs/providers.md).

The stream's raw events are read here rather than through the SDK's ``messages.stream()``
helper, so tool input that is not valid JSON is reported as a malformed response
instead of being repaired by a partial-JSON parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
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

if TYPE_CHECKING:  # imported on the first call: see openai_compat
    import anthropic
    from anthropic.types import RawMessageStreamEvent

PROVIDER = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
# The messages API requires max_tokens; this is the default when model_settings has none.
DEFAULT_MAX_TOKENS = 4096


def _make_client(settings: CallSettings) -> anthropic.Anthropic:
    import anthropic

    return anthropic.Anthropic(api_key=settings.api_key, base_url=settings.base_url, max_retries=0)


def _make_async_client(settings: CallSettings, aiohttp: bool) -> anthropic.AsyncAnthropic:
    import anthropic

    return anthropic.AsyncAnthropic(
        api_key=settings.api_key,
        base_url=settings.base_url,
        max_retries=0,
        http_client=anthropic.DefaultAioHttpClient() if aiohttp else None,
    )


_clients = ClientCache(_make_client)
_async_clients = AsyncClientPool(_make_async_client)


class AnthropicProvider:
    def __init__(self, config: Config | None = None) -> None:
        self._config = resolve_config(config)

    def complete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse:
        settings, params = self._prepare(request)
        client = _clients.get(settings)  # first call: imports the SDK, not on the clock
        deadline = Deadline(settings.timeout)
        with _sdk_errors_mapped():
            if not settings.stream:
                message = client.messages.create(**params, timeout=settings.timeout)
                with bad_data_is_malformed(PROVIDER):
                    return _read_message(message, on_delta)
            stream = client.messages.create(**params, stream=True, timeout=settings.timeout)
            with stream, bad_data_is_malformed(PROVIDER):
                return read_stream(stream, _StreamReader(on_delta), deadline)

    async def acomplete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse:
        """``complete`` on the SDK's async client: the same request, errors and result."""
        settings, params = self._prepare(request)
        deadline = Deadline(settings.timeout)
        async with _async_clients.client(settings) as client:
            with _sdk_errors_mapped():
                if not settings.stream:
                    message = await client.messages.create(**params, timeout=settings.timeout)
                    with bad_data_is_malformed(PROVIDER):
                        return _read_message(message, on_delta)
                stream = await client.messages.create(
                    **params, stream=True, timeout=settings.timeout
                )
                async with stream:
                    with bad_data_is_malformed(PROVIDER):
                        return await aread_stream(stream, _StreamReader(on_delta), deadline)

    def _prepare(self, request: ModelRequest) -> tuple[CallSettings, dict[str, Any]]:
        key = self._config.anthropic_api_key
        settings = call_settings(
            request,
            provider=PROVIDER,
            api_key=key.get_secret_value() if key else None,
            default_base_url=self._config.anthropic_base_url or DEFAULT_BASE_URL,
            allowed_base_urls=self._config.model_base_urls,
        )
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        params: dict[str, Any] = {
            "model": settings.model,
            "max_tokens": settings.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": _wire_messages(request.messages),
        }
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = [_wire_tool(t) for t in request.tools]
        if settings.temperature is not None:
            # No longer a parameter of this SDK's create(); servers that take it still do.
            params["extra_body"] = {"temperature": settings.temperature}
        return settings, params


@contextmanager
def _sdk_errors_mapped() -> Iterator[None]:
    import anthropic
    import httpx2

    try:
        yield
    except anthropic.APIStatusError as error:
        raise status_error(
            PROVIDER, error.status_code, error.response.headers, error.body, error.message
        ) from error
    except (anthropic.APITimeoutError, httpx2.TimeoutException) as error:
        # The SDK wraps timeouts before the response; mid-stream ones arrive raw.
        raise connection_error(PROVIDER, error, timeout=timed_out(error)) from error
    except (anthropic.APIConnectionError, httpx2.TransportError) as error:
        raise connection_error(PROVIDER, error, timeout=False) from error
    except anthropic.APIResponseValidationError as error:
        malformed(PROVIDER, error.message)
    except json.JSONDecodeError as error:  # the SDK decodes a non-streamed body itself
        malformed(PROVIDER, f"the body is not JSON ({error.msg})")


def _wire_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Our turns as Anthropic's: tool results are user content, parallel ones in one turn."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue  # the ``system`` parameter
        if message.role == "tool" and message.tool_call_id:
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            last = wire[-1] if wire else None
            if last and last["role"] == "user" and _all_tool_results(last["content"]):
                last["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
        elif message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {
                    "type": "tool_use",
                    "id": call.provider_call_id,
                    "name": call.name,
                    "input": call.arguments if isinstance(call.arguments, dict) else {},
                }
                for call in message.tool_calls
            )
            wire.append({"role": "assistant", "content": blocks})
        else:
            # "tool" without a call id (nothing to pair it with) is told to the model as text.
            role = "assistant" if message.role == "assistant" else "user"
            wire.append({"role": role, "content": message.content})
    return wire


def _all_tool_results(content: object) -> bool:
    return isinstance(content, list) and all(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _wire_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.parameters or {"type": "object", "properties": {}},
    }


@dataclass
class _Block:
    kind: str
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


class _StreamReader:
    """Assembles a streamed turn event by event (the sync and async loops share it)."""

    def __init__(self, on_delta: DeltaSink) -> None:
        self._on_delta = on_delta
        self._blocks: dict[int, _Block] = {}
        self._input_tokens = 0
        self._output_tokens = 0
        self._stopped = False

    def feed(self, event: RawMessageStreamEvent) -> None:
        from anthropic.types import (
            InputJSONDelta,
            RawContentBlockDeltaEvent,
            RawContentBlockStartEvent,
            RawMessageDeltaEvent,
            RawMessageStartEvent,
            RawMessageStopEvent,
            TextBlock,
            TextDelta,
            ToolUseBlock,
        )

        blocks = self._blocks
        # Event and block types this provider does not use (thinking, citations, ping,
        # future ones) are skipped, not refused.
        if isinstance(event, RawMessageStartEvent):
            usage = event.message.usage
            self._input_tokens = _input_tokens(
                usage.input_tokens,
                usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens,
            )
            self._output_tokens = usage.output_tokens or 0
        elif isinstance(event, RawContentBlockStartEvent):
            start = event.content_block
            if isinstance(start, ToolUseBlock):
                blocks[event.index] = _Block("tool_use", id=start.id, name=start.name)
            elif isinstance(start, TextBlock):
                blocks[event.index] = _Block("text", parts=[start.text] if start.text else [])
        elif isinstance(event, RawContentBlockDeltaEvent):
            delta = event.delta
            block = blocks.get(event.index)
            if block is None:
                return
            if isinstance(delta, TextDelta):
                block.parts.append(delta.text)
                if delta.text:
                    self._on_delta(delta.text)
            elif isinstance(delta, InputJSONDelta):
                block.parts.append(delta.partial_json)
        elif isinstance(event, RawMessageDeltaEvent):
            final = event.usage
            self._output_tokens = final.output_tokens
            if final.input_tokens is not None:
                self._input_tokens = _input_tokens(
                    final.input_tokens,
                    final.cache_creation_input_tokens,
                    final.cache_read_input_tokens,
                )
        elif isinstance(event, RawMessageStopEvent):
            self._stopped = True

    def finish(self) -> ModelResponse:
        if not self._stopped:
            raise ProviderError(
                "provider_connection",
                f"The {PROVIDER} stream ended before the model finished its turn.",
                transient=True,
            )
        ordered = [self._blocks[i] for i in sorted(self._blocks)]
        text = "".join("".join(b.parts) for b in ordered if b.kind == "text")
        calls = tuple(
            _requested_call(i, b.id, b.name, parse_arguments(PROVIDER, b.name, "".join(b.parts)))
            for i, b in enumerate(b for b in ordered if b.kind == "tool_use")
        )
        return ModelResponse(
            text=text,
            tool_calls=calls,
            usage=Usage(self._input_tokens, self._output_tokens),
        )


def _read_message(message: object, on_delta: DeltaSink) -> ModelResponse:
    from anthropic.types import Message as WireMessage
    from anthropic.types import TextBlock, ToolUseBlock

    if not isinstance(message, WireMessage):
        malformed(PROVIDER, "the body is not a JSON object")
    text_parts: list[str] = []
    calls: list[RequestedToolCall] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            text_parts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            if not isinstance(block.input, dict):
                malformed(PROVIDER, f"input of {block.name!r} is not a JSON object")
            calls.append(_requested_call(len(calls), block.id, block.name, block.input))
    text = "".join(text_parts)
    if text:
        on_delta(text)
    usage = message.usage
    return ModelResponse(
        text=text,
        tool_calls=tuple(calls),
        usage=Usage(
            _input_tokens(
                usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens
            ),
            usage.output_tokens or 0,
        ),
    )


def _input_tokens(plain: int | None, cache_write: int | None, cache_read: int | None) -> int:
    # Cached prompt tokens are still prompt tokens: budgets count them all.
    return (plain or 0) + (cache_write or 0) + (cache_read or 0)


def _requested_call(
    index: int, call_id: str | None, name: str | None, arguments: dict[str, Any]
) -> RequestedToolCall:
    if not call_id or not name:
        malformed(PROVIDER, f"tool_use block {index} has no id or name")
    return RequestedToolCall(provider_call_id=call_id, name=name, arguments=arguments)
