"""The provider registry: names, and no SDK cost for processes that never call a model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentmaestro.agents.providers import get_provider
from agentmaestro.agents.providers.base import ProviderError


def test_an_unknown_provider_is_a_permanent_error() -> None:
    with pytest.raises(ProviderError) as raised:
        get_provider("gpt-by-carrier-pigeon")
    assert (raised.value.code, raised.value.transient) == ("unknown_provider", False)


def test_importing_the_providers_does_not_import_the_sdks() -> None:
    # Every web and worker process imports the registry; the SDKs take seconds to load.
    code = (
        "import sys, agentmaestro.agents.providers as p; "
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
