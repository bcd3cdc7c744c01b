"""A deterministic provider for demos and tests: answers come from the agent's settings.

``model_settings = {"provider": "scripted", "script": [turn0, turn1, …]}`` where each
turn is ``{"text": "...", "tool_calls": [{"name": "calculator", "arguments": {…}}],
"delay_ms": 0}``. Turn *n* of a run gets ``script[n]``; past the end of the script (or
with no script) the model answers with a final message that echoes the latest tool
results, or the input.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from agentmaestro.agents.providers.base import (
    DeltaSink,
    ModelRequest,
    ModelResponse,
    ProviderError,
    Usage,
)
from agentmaestro.runs.engine.decide import RequestedToolCall


def _words(text: str) -> int:
    return max(1, len(text.split()))


class ScriptedProvider:
    @staticmethod
    def is_inline(settings: dict[str, Any]) -> bool:
        """True when no turn of the script waits: a call costs microseconds, no I/O."""
        script = settings.get("script") or []
        turns = [t for t in script if isinstance(t, dict)]
        return not settings.get("delay_ms") and not any(t.get("delay_ms") for t in turns)

    def complete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse:
        turn, delay = self._turn(request)
        if delay:
            time.sleep(delay)
        return self._answer(request, turn, on_delta)

    async def acomplete(self, request: ModelRequest, on_delta: DeltaSink) -> ModelResponse:
        turn, delay = self._turn(request)
        if delay:
            await asyncio.sleep(delay)
        return self._answer(request, turn, on_delta)

    @staticmethod
    def _turn(request: ModelRequest) -> tuple[dict[str, Any], float]:
        """This call's script turn and its delay in seconds."""
        script: list[dict[str, Any]] = request.settings.get("script") or []
        turn: dict[str, Any] = script[request.turn] if request.turn < len(script) else {}
        if not isinstance(turn, dict):
            raise ProviderError(
                "invalid_script", "Each script turn must be an object.", transient=False
            )
        return turn, float(turn.get("delay_ms", request.settings.get("delay_ms", 0))) / 1000

    def _answer(
        self, request: ModelRequest, turn: dict[str, Any], on_delta: DeltaSink
    ) -> ModelResponse:
        text = turn.get("text")
        if text is None:
            text = self._default_answer(request) if not turn.get("tool_calls") else ""
        calls = tuple(
            RequestedToolCall(
                provider_call_id=f"call_{request.turn}_{i}",
                name=str(call["name"]),
                arguments=call.get("arguments", {}),
            )
            for i, call in enumerate(turn.get("tool_calls") or [])
        )
        # Pieces that join back to the text exactly (words with their trailing space).
        for piece in re.findall(r"\S+\s*|\s+", str(text)):
            on_delta(piece)
        prompt = sum(_words(m.content) for m in request.messages)
        return ModelResponse(
            text=str(text), tool_calls=calls, usage=Usage(prompt, _words(str(text)) + len(calls))
        )

    @staticmethod
    def _default_answer(request: ModelRequest) -> str:
        results = [m.content for m in request.messages if m.role == "tool"]
        if results:
            return "Tool results: " + "; ".join(results)
        user = [m.content for m in request.messages if m.role == "user"]
        return "You said: " + (user[-1] if user else json.dumps(None))
