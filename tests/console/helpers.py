"""Running the ``agentmaestro`` command in a subprocess, as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).with_name("agentmaestro")


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def standalone_env(**extra: str) -> dict[str, str]:
    """This process's environment without the variables that select the distributed stack
    (and without the test settings), plus ``extra``."""
    drop = {
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "DJANGO_SETTINGS_MODULE",
        "AGENTMAESTRO_DATA_DIR",
        # The provider tests' fake keys (tests/agents/conftest.py) would seed an assistant
        # agent on a model that is not there.
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "AGENTMAESTRO_ASSISTANT_MODEL",
    }
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}
