"""The one interface every model provider implements, and the plain data it speaks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from agentmaestro.runs.engine.decide import RequestedToolCall


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    # assistant messages: the calls it asked for; tool messages: which call answered.
    tool_calls: tuple[RequestedToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ModelRequest:
    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    # 0 for the run's first model call, 1 for the second, …
    turn: int = 0
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class ModelResponse:
    text: str
    tool_calls: tuple[RequestedToolCall, ...] = ()
    usage: Usage = Usage()


class ProviderError(Exception):
    """A failed model call. ``transient`` ones (429, 5xx, timeouts) are retried."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.retry_after = retry_after


DeltaSink = Callable[[str], None]


class ModelProvider(Protocol):
    def complete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse: ...


@runtime_checkable
class AsyncModelProvider(Protocol):
    """A provider that can also make its call as a coroutine (the worker's model-call
    executor keeps hundreds in flight on one event loop). Same request, errors, deltas
    and result as ``complete``; a provider without it runs ``complete`` on a thread."""

    async def acomplete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse: ...
