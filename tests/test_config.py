"""Settings come from the environment, once; weak secrets are refused outside debug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentmaestro.config import Config, InsecureConfiguration

PG = "postgres://postgres@127.0.0.1:5432/agentmaestro"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test passes counts, not the suite's own environment."""
    for field in Config.model_fields.values():
        if field.alias:
            monkeypatch.delenv(field.alias, raising=False)


def config(**env: str) -> Config:
    return Config(**env)  # type: ignore[arg-type]


def test_a_server_on_postgres_without_a_secret_refuses_to_start() -> None:
    with pytest.raises(InsecureConfiguration, match="SECRET_KEY is not set"):
        config(DATABASE_URL=PG).effective_secret_key()


@pytest.mark.parametrize(
    "weak", ["django-insecure-abc" + "x" * 40, "change-me" + "x" * 40, "short"]
)
def test_a_default_or_short_secret_is_refused_outside_debug(weak: str) -> None:
    with pytest.raises(InsecureConfiguration, match="default or shorter"):
        config(DATABASE_URL=PG, SECRET_KEY=weak).effective_secret_key()


def test_debug_allows_a_development_secret() -> None:
    assert config(DATABASE_URL=PG, DEBUG="1", SECRET_KEY="short").effective_secret_key() == "short"
    assert (
        config(DATABASE_URL=PG, DEBUG="true").effective_secret_key().startswith("django-insecure")
    )


def test_standalone_generates_one_secret_and_keeps_it(tmp_path: Path) -> None:
    first = config(AGENTMAESTRO_DATA_DIR=str(tmp_path)).effective_secret_key()
    again = config(AGENTMAESTRO_DATA_DIR=str(tmp_path)).effective_secret_key()
    assert first == again
    assert len(first) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_lists_are_read_comma_separated() -> None:
    parsed = config(ALLOWED_HOSTS="a.example, b.example", CSRF_TRUSTED_ORIGINS="https://a.example")
    assert parsed.allowed_hosts == ["a.example", "b.example"]
    assert parsed.csrf_trusted_origins == ["https://a.example"]


def test_no_urls_means_the_standalone_stack() -> None:
    parsed = config()
    assert parsed.standalone_database
    assert parsed.standalone_broker
    assert not config(DATABASE_URL=PG, REDIS_URL="redis://x").standalone_database


def test_the_command_refuses_with_one_clear_line(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")
    }
    env["DATABASE_URL"] = PG
    result = subprocess.run(
        [sys.executable, "-m", "agentmaestro.cli", "check"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "agentmaestro: refusing to start: SECRET_KEY is not set. Every web and worker process "
        "needs the same secret: set SECRET_KEY to a long random value (or DEBUG=1 for local "
        "development)."
    ]
