"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, LM Studio, …) on the ``openai`` SDK.

``model_settings = {"provider": "openai", "model": "gpt-4o-mini", "base_url": …,
"temperature": 0.2, "max_tokens": 1024, "timeout_seconds": 60, "stream": true}``; the key
comes from ``OPENAI_API_KEY`` (see config.py and docs/providers.md).

The helpers in the first section (settings, HTTP status mapping, Retry-After) are shared
with the Anthropic provider: both SDKs come from the same generator and fail the same way.
The SDK never retries (``max_retries=0``): a transient ProviderError goes back to the
Celery task, which retries with backoff and frees the worker slot in between.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

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
    from openai.types.chat import ChatCompletionChunk

# Shared with anthropic_provider -------------------------------------------------------

# model_settings keys that look like credentials: refused, so nobody believes a key stored
# in the database is used (it would sit there in clear).
_KEY_SETTINGS = frozenset({"api_key", "apikey", "key", "token", "authorization", "headers"})


@dataclass(frozen=True)
class CallSettings:
    """What one call needs, checked once: the agent's model_settings plus the environment."""

    model: str
    base_url: str
    api_key: str
    temperature: float | None
    max_tokens: int | None
    timeout: float
    stream: bool


def resolve_config(config: Config | None) -> Config:
    """The given config (tests), else the process's, read once at startup by settings.py."""
    if config is not None:
        return config
    from django.conf import settings

    loaded: Config = settings.CONFIG
    return loaded


def call_settings(
    request: ModelRequest,
    *,
    provider: str,
    api_key: str | None,
    default_base_url: str,
    allowed_base_urls: Iterable[str],
) -> CallSettings:
    raw = request.settings
    stored_keys = sorted(k for k in raw if k.lower() in _KEY_SETTINGS)
    if stored_keys:
        raise ProviderError(
            "provider_config",
            f"model_settings may not hold credentials ({', '.join(stored_keys)}); "
            f"the {provider} key comes from the environment.",
            transient=False,
        )
    if not api_key:
        env = f"{provider.upper()}_API_KEY"
        raise ProviderError(
            "provider_missing_key",
            f"No API key for the {provider} provider: set {env} in the environment "
            "of the web and worker processes.",
            transient=False,
        )
    if not request.model:
        raise ProviderError(
            "provider_config", "model_settings.model names no model.", transient=False
        )
    base_url = _normalise_url(raw.get("base_url") or default_base_url)
    allowed = {_normalise_url(default_base_url), *(_normalise_url(u) for u in allowed_base_urls)}
    if base_url not in allowed:
        raise ProviderError(
            "provider_base_url_not_allowed",
            f"model_settings.base_url {base_url!r} is neither the configured {provider} base "
            "URL nor listed in AGENTMAESTRO_MODEL_BASE_URLS; the API key is never sent to "
            "other addresses.",
            transient=False,
        )
    return CallSettings(
        model=request.model,
        base_url=base_url,
        api_key=api_key,
        temperature=_optional_number(raw, "temperature", float),
        max_tokens=_optional_number(raw, "max_tokens", int),
        timeout=request.timeout_seconds,
        stream=_stream_flag(raw),
    )


def _normalise_url(url: object) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ProviderError(
            "provider_config", f"base_url must be an http(s) URL, not {url!r}.", transient=False
        )
    return url.rstrip("/")


def _optional_number[N: (int, float)](raw: Mapping[str, Any], key: str, kind: type[N]) -> N | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderError(
            "provider_config", f"model_settings.{key} must be a number.", transient=False
        )
    if kind is int and value != int(value):
        raise ProviderError(
            "provider_config", f"model_settings.{key} must be a whole number.", transient=False
        )
    return kind(value)


def _stream_flag(raw: Mapping[str, Any]) -> bool:
    value = raw.get("stream", True)
    if not isinstance(value, bool):
        raise ProviderError(
            "provider_config", "model_settings.stream must be true or false.", transient=False
        )
    return value


class Deadline:
    """The whole call's time budget: the SDK's timeout bounds each read, not a trickling stream."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise ProviderError(
                "provider_timeout",
                f"The model did not finish within {self.seconds:g} s.",
                transient=True,
            )


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After (seconds or an HTTP date), preferring OpenAI's millisecond variant."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# Error types (from the body) that say "try again later" whatever the status line says;
# Anthropic streams report overload as an ``error`` event inside a 200 response.
_TRANSIENT_ERROR_TYPES = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "server_error", "timeout_error"}
)


def status_error(
    provider: str, status: int, headers: Mapping[str, str], body: object, message: str
) -> ProviderError:
    """The ProviderError for an HTTP error answer (see the table in docs/providers.md)."""
    error_type, error_code = _error_kind(body)
    text = f"{provider} answered {status}: {message}"
    if status == 429 and "insufficient_quota" in (error_type, error_code):
        return ProviderError("provider_quota", text, transient=False)
    if status == 429 or error_type == "rate_limit_error":
        return ProviderError(
            "provider_rate_limited",
            text,
            transient=True,
            retry_after=retry_after_seconds(headers),
        )
    if status >= 500 or error_type in _TRANSIENT_ERROR_TYPES:
        return ProviderError(
            "provider_unavailable", text, transient=True, retry_after=retry_after_seconds(headers)
        )
    if status in (408, 409):  # request timeout, lock conflict: the SDKs retry these too
        return ProviderError("provider_unavailable", text, transient=True)
    code = {
        401: "provider_auth",
        403: "provider_permission",
        404: "provider_not_found",
        413: "provider_request_too_large",
    }.get(status, "provider_bad_request")
    return ProviderError(code, text, transient=False)


def _error_kind(body: object) -> tuple[str | None, str | None]:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            kind, code = inner.get("type"), inner.get("code")
            return (
                kind if isinstance(kind, str) else None,
                code if isinstance(code, str) else None,
            )
    return None, None


def connection_error(provider: str, error: Exception, *, timeout: bool) -> ProviderError:
    if timeout:
        return ProviderError(
            "provider_timeout", f"{provider} did not answer in time.", transient=True
        )
    return ProviderError(
        "provider_connection", f"Could not reach {provider}: {error}", transient=True
    )


def malformed(provider: str, detail: str) -> NoReturn:
    raise ProviderError(
        "malformed_response", f"{provider} sent a malformed response: {detail}", transient=False
    )


@contextmanager
def bad_data_is_malformed(provider: str) -> Iterator[None]:
    """Around reading a response only: here these errors mean the data was not as documented."""
    try:
        yield
    except (ValueError, AttributeError, TypeError, KeyError, IndexError) as error:
        # invalid JSON (JSONDecodeError is a ValueError) or an object missing its fields
        malformed(provider, f"{type(error).__name__}: {error}")


def parse_arguments(provider: str, name: str, raw: object) -> dict[str, Any]:
    """Tool-call arguments arrive as a JSON text; anything but a JSON object is malformed."""
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        malformed(provider, f"arguments of {name!r} are not a JSON text")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        malformed(provider, f"arguments of {name!r} are not valid JSON ({error.msg})")
    if not isinstance(value, dict):
        malformed(provider, f"arguments of {name!r} are not a JSON object")
    return value


# Clients are shared per (base URL, key): each holds an HTTP connection pool, and a worker
# keeps hundreds of calls in flight. httpx clients are thread-safe.
_clients: dict[tuple[str, str], openai.OpenAI] = {}
_clients_lock = threading.Lock()


def _client(settings: CallSettings) -> openai.OpenAI:
    import openai

    key = (settings.base_url, settings.api_key)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = openai.OpenAI(
                api_key=settings.api_key, base_url=settings.base_url, max_retries=0
            )
            _clients[key] = client
        return client


# The provider -------------------------------------------------------------------------

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAICompatProvider:
    def __init__(self, config: Config | None = None) -> None:
        self._config = resolve_config(config)

    def complete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse:
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
        client = _client(settings)  # first call: imports the SDK, not on the clock
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
                return _read_stream(stream, on_delta, deadline, request.turn)


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
        raise connection_error(PROVIDER, error, timeout=True) from error
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


def _read_stream(
    chunks: Iterable[ChatCompletionChunk], on_delta: DeltaSink, deadline: Deadline, turn: int
) -> ModelResponse:
    from openai.types.chat import ChatCompletionChunk

    text: list[str] = []
    calls: dict[int, _PartialCall] = {}
    usage = Usage()
    finished = False
    for chunk in chunks:
        deadline.check()
        if not isinstance(chunk, ChatCompletionChunk):
            malformed(PROVIDER, "a stream chunk is not a JSON object")
        if chunk.usage is not None:
            usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                text.append(delta.content)
                on_delta(delta.content)
            for part in delta.tool_calls or ():
                partial = calls.setdefault(
                    part.index if part.index is not None else len(calls), _PartialCall()
                )
                partial.id = partial.id or (part.id or "")
                if part.function is not None:
                    partial.name = partial.name or (part.function.name or "")
                    partial.arguments.append(part.function.arguments or "")
            if choice.finish_reason is not None:
                finished = True
    if not finished:
        raise ProviderError(
            "provider_connection",
            f"The {PROVIDER} stream ended before the model finished its turn.",
            transient=True,
        )
    return ModelResponse(
        text="".join(text),
        tool_calls=tuple(
            _requested_call(turn, i, p.id, p.name, "".join(p.arguments))
            for i, p in enumerate(calls[k] for k in sorted(calls))
        ),
        usage=usage,
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
