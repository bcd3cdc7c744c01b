"""Model providers behind one interface (base.py). ``get_provider(name)`` picks one."""

from __future__ import annotations

from agentmaestro.agents.providers.anthropic_provider import AnthropicProvider
from agentmaestro.agents.providers.base import ModelProvider, ProviderError
from agentmaestro.agents.providers.openai_compat import OpenAICompatProvider
from agentmaestro.agents.providers.scripted import ScriptedProvider

_PROVIDERS: dict[str, type[ModelProvider]] = {
    "scripted": ScriptedProvider,
    "openai": OpenAICompatProvider,
    "anthropic": AnthropicProvider,
}


def register(name: str, provider: type[ModelProvider]) -> None:
    _PROVIDERS[name] = provider


def get_provider(name: str) -> ModelProvider:
    try:
        return _PROVIDERS[name]()
    except KeyError:
        raise ProviderError(
            "unknown_provider", f"No model provider named {name!r}.", transient=False
        ) from None


def runs_inline(settings: dict[str, object]) -> bool:
    """Whether a call of this model is fast enough to run inline (eager continuation).

    Only the scripted provider without delays: every real provider does network I/O
    that may take seconds and belongs on the activities queue.
    """
    return settings.get("provider", "scripted") == "scripted" and ScriptedProvider.is_inline(
        dict(settings)
    )
