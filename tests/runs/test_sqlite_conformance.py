"""The same store, transition, replay and engine tests, against the standalone SQLite form."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE_MODULES = [
    "tests/runs/test_event_store.py",
    "tests/runs/test_event_concurrency.py",
    "tests/runs/test_transitions.py",
    "tests/runs/test_run_services.py",
    "tests/runs/test_contracts.py",
    # The engine's steps, eager and through the broker (its ORM store form).
    "tests/engine/test_eager.py",
]


@pytest.mark.slow
def test_the_sqlite_store_passes_the_conformance_suite() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--ds=tests.settings_sqlite",
            "-q",
            "-p",
            "no:cacheprovider",
            *CONFORMANCE_MODULES,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = "\n".join(result.stdout.splitlines()[-30:])
    assert result.returncode == 0, (
        f"SQLite conformance run failed:\n{tail}\n{result.stderr[-2000:]}"
    )
    assert " passed" in tail, tail
    assert " failed" not in tail, tail
