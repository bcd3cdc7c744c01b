"""A local HTTP server that speaks OpenAI's chat completions or Anthropic's messages wire.

Only the wire is fake: the providers under test use the real SDKs over real sockets.
Each request takes the next scripted reply. An :class:`Answer` is rendered the way the
real API renders a model turn — a JSON body, or Server-Sent Events when the request says
``"stream": true`` (chunked transfer encoding, ``data: [DONE]`` for OpenAI, named events
with a ``ping`` for Anthropic). :class:`Raw` sends exact bytes, for errors and malformed
answers. Every request is recorded, so tests can check what the provider sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Dialect = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    # The arguments as the model wrote them: a JSON text, possibly invalid on purpose.
    arguments: str


@dataclass(frozen=True)
class Answer:
    text: str = ""
    calls: tuple[Call, ...] = ()
    input_tokens: int = 21
    output_tokens: int = 9
    # Streaming only: seconds to go silent after the first event (a stalled stream).
    stall_after_first_event: float = 0.0


@dataclass(frozen=True)
class Raw:
    status: int
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    # If set, sent as an event stream (chunked), one element per write.
    events: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Slow:
    """Say nothing for ``seconds`` (not even the status line), then reply."""

    seconds: float
    then: Answer | Raw


Reply = Answer | Raw | Slow


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class FakeModelServer:
    dialect: Dialect
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    # Once the scripted replies are used up: the reply to a request, from its body (for
    # many runs at once, whose requests arrive in no fixed order).
    respond: Callable[[dict[str, Any]], Reply] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        # What a user puts in OPENAI_BASE_URL / ANTHROPIC_BASE_URL for this server.
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.dialect == "openai" else root

    def start(self) -> FakeModelServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, *replies: Reply) -> None:
        """Reply with these, in order, and nothing else (``respond`` is reset)."""
        with self._lock:
            self.respond = None
            self.replies.clear()
            self.replies.extend(replies)
            self.requests.clear()

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            if self.replies:
                return self.replies.popleft()
            if self.respond is not None:
                return self.respond(recorded.body)
        return error_reply(self.dialect, 500, "the fake server has no reply scripted")


# Rendering ----------------------------------------------------------------------------


def _pieces(text: str) -> list[str]:
    """Token-ish pieces that concatenate back to the text exactly."""
    return re.findall(r"\S+\s*|\s+", text)


def _halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [part for part in (text[:middle], text[middle:]) if part]


def _openai_json(answer: Answer, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.calls
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if answer.calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        },
    }


def _openai_events(answer: Answer, model: str, include_usage: bool) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(answer.text):
        yield chunk({"content": piece})
    for index, call in enumerate(answer.calls):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        )
        for part in _halves(call.arguments):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    yield chunk({}, "tool_calls" if answer.calls else "stop")
    if include_usage:
        usage = {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        }
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


def _anthropic_json(answer: Answer, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    content.extend(
        {"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)}
        for c in answer.calls
    )
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if answer.calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
    }


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _anthropic_events(answer: Answer, model: str) -> Iterator[str]:
    yield sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1},
            },
        },
    )
    yield sse("ping", {"type": "ping"})
    index = 0
    if answer.text:
        yield sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for piece in _pieces(answer.text):
            yield sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        index = 1
    for call in answer.calls:
        yield sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": {},
                },
            },
        )
        for part in ["", *_halves(call.arguments)]:
            yield sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                },
            )
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    yield sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if answer.calls else "end_turn"},
            "usage": {"output_tokens": answer.output_tokens},
        },
    )
    yield sse("message_stop", {"type": "message_stop"})


def error_reply(
    dialect: Dialect,
    status: int,
    message: str,
    *,
    kind: str | None = None,
    code: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Raw:
    """An error answer with the body each API really sends."""
    if dialect == "openai":
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": kind or "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    else:
        body = {
            "type": "error",
            "error": {"type": kind or "invalid_request_error", "message": message},
        }
    return Raw(status, json.dumps(body), headers)


# The server ---------------------------------------------------------------------------

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def _handler_for(server: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            body = json.loads(raw) if raw else {}
            recorded = Recorded(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
            )
            if self.path != PATHS[server.dialect]:
                self._send(Raw(404, json.dumps({"error": {"message": f"no {self.path}"}})), body)
                return
            # A client that gave up (its timeout) is exactly what some tests want.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(server._next(recorded), body)

        def _send(self, reply: Reply, request: dict[str, Any]) -> None:
            if isinstance(reply, Slow):
                time.sleep(reply.seconds)
                reply = reply.then
            if isinstance(reply, Raw):
                if reply.events is not None:
                    self._stream(reply.status, reply.headers, iter(reply.events), 0.0)
                    return
                data = reply.body.encode()
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                return
            model = str(request.get("model", ""))
            if not request.get("stream"):
                render = _openai_json if server.dialect == "openai" else _anthropic_json
                self._send(Raw(200, json.dumps(render(reply, model))), request)
                return
            if server.dialect == "openai":
                include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
                events = _openai_events(reply, model, include_usage)
            else:
                events = _anthropic_events(reply, model)
            self._stream(200, (), events, reply.stall_after_first_event)

        def _stream(
            self,
            status: int,
            headers: tuple[tuple[str, str], ...],
            events: Iterator[str],
            stall: float,
        ) -> None:
            self.send_response(status)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("cache-control", "no-cache")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            for number, event in enumerate(events):
                data = event.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                if number == 0 and stall:
                    time.sleep(stall)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler
