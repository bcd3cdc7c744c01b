"""Process configuration, read once from the environment into a typed object.

Every command (standalone, web, worker, beat, tests) reads the same variables. Leaving
``DATABASE_URL`` and ``REDIS_URL`` unset selects the standalone stack: SQLite in the data
directory, the in-memory channel layer and an in-process Celery broker.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

INSECURE_SECRET_PREFIXES = ("django-insecure", "change-me", "changeme", "secret")


class Config(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    debug: bool = Field(
        default=False, alias="DEBUG", description="development mode (never in production)"
    )
    secret_key: str | None = Field(
        default=None,
        alias="SECRET_KEY",
        description="required on PostgreSQL unless DEBUG; 32+ random characters",
    )
    database_url: str | None = Field(
        default=None,
        alias="DATABASE_URL",
        description="PostgreSQL URL; unset: SQLite in the data directory (standalone)",
    )
    redis_url: str | None = Field(
        default=None,
        alias="REDIS_URL",
        description="Redis for the channel layer and broker; unset: in-process (standalone)",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=["localhost", "127.0.0.1", "[::1]"],
        alias="ALLOWED_HOSTS",
        description="comma-separated host names; also the Origins allowed on WebSockets",
    )
    csrf_trusted_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        alias="CSRF_TRUSTED_ORIGINS",
        description="comma-separated full origins, e.g. https://agents.example.com",
    )
    data_dir: Path = Field(
        default=Path(".agentmaestro"),
        alias="AGENTMAESTRO_DATA_DIR",
        description="standalone's SQLite database and secret key",
    )
    log_level: str = Field(default="INFO", alias="LOG_LEVEL", description="root log level")
    # Seconds between WebSocket heartbeats; each one also re-reads the run's last_seq, so
    # it bounds how late a lost last broadcast can arrive.
    ws_heartbeat_seconds: float = Field(
        default=5.0,
        alias="AGENTMAESTRO_WS_HEARTBEAT_SECONDS",
        description="WebSocket heartbeat interval (bounds a lost broadcast's delay)",
    )
    conn_max_age: int = Field(
        default=60, alias="CONN_MAX_AGE", description="seconds to keep PostgreSQL connections open"
    )
    # PostgreSQL connection pool per process (0 = off). Set it on activity workers: a
    # thread pool of hundreds of in-flight model calls then shares this many connections
    # instead of holding one each (connections are released across every call's I/O).
    db_pool_size: int = Field(
        default=0,
        ge=0,
        alias="AGENTMAESTRO_DB_POOL_SIZE",
        description="PostgreSQL connection pool per process (0 = off); use on workers",
    )
    # How often the reconciler looks for stalled runs and expired activity leases, and
    # how long work may look idle before it is re-enqueued.
    reconcile_seconds: float = Field(
        default=10.0,
        alias="AGENTMAESTRO_RECONCILE_SECONDS",
        description="how often beat runs the reconciler",
    )
    stall_seconds: float = Field(
        default=15.0,
        alias="AGENTMAESTRO_STALL_SECONDS",
        description="idle time before the reconciler re-enqueues a run or activity",
    )
    # Eager continuation (docs/engine.md): the worker that commits a step runs the next
    # fast activities (built-in tools, an undelayed scripted model) and the step after
    # them itself, for up to this many milliseconds, instead of a broker hop each. 0 = off.
    eager_slice_ms: float = Field(
        default=100.0,
        ge=0,
        alias="AGENTMAESTRO_EAGER_SLICE_MS",
        description="eager continuation time slice per worker (0 = off)",
    )
    # How a worker on the activities queue makes model calls (docs/engine.md): "async",
    # coroutines on one event loop with the database work on a few engine threads, the
    # run's follow-up calls handed over in-process; or "threads", one Celery task (and
    # thread) per call. `agentmaestro worker --model-calls` overrides it.
    model_calls: Literal["async", "threads"] = Field(
        default="async",
        alias="AGENTMAESTRO_MODEL_CALLS",
        description="how workers make model calls: async (event loop) or threads (Celery)",
    )
    max_model_calls: int = Field(
        default=1000,
        ge=1,
        alias="AGENTMAESTRO_MAX_MODEL_CALLS",
        description="model calls in flight per worker process (--model-calls async)",
    )
    engine_threads: int = Field(
        default=4,
        ge=1,
        alias="AGENTMAESTRO_ENGINE_THREADS",
        description="threads doing model calls' database work (--model-calls async)",
    )
    # The Redis channel layer: "pubsub" (RedisPubSubChannelLayer, the default) or "core"
    # (the list-based RedisChannelLayer), selectable so bench/events.py can compare them.
    channel_layer: Literal["pubsub", "core"] = Field(
        default="pubsub",
        alias="AGENTMAESTRO_CHANNEL_LAYER",
        description="channels_redis layer: pubsub (default) or core",
    )
    # Model providers (agents/providers/). Keys live only in the environment, never in an
    # agent's model_settings. An agent may name its own base_url only if it is the
    # provider's configured one or listed in AGENTMAESTRO_MODEL_BASE_URLS, because the
    # provider's key is sent to it.
    openai_api_key: SecretStr | None = Field(
        default=None,
        alias="OPENAI_API_KEY",
        description="key for the openai provider (any value for a local server)",
    )
    openai_base_url: str | None = Field(
        default=None,
        alias="OPENAI_BASE_URL",
        description="OpenAI-compatible server (vLLM, Ollama, LM Studio); default OpenAI",
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, alias="ANTHROPIC_API_KEY", description="key for the anthropic provider"
    )
    # The model of the "assistant" demo agent, seeded when a provider is configured.
    assistant_model: str | None = Field(
        default=None,
        alias="AGENTMAESTRO_ASSISTANT_MODEL",
        description="model of the assistant demo agent",
    )
    anthropic_base_url: str | None = Field(
        default=None, alias="ANTHROPIC_BASE_URL", description="Anthropic API base URL"
    )
    model_base_urls: Annotated[list[str], NoDecode] = Field(
        default=[],
        alias="AGENTMAESTRO_MODEL_BASE_URLS",
        description="comma-separated base URLs agents may name besides the default",
    )

    @field_validator("allowed_hosts", "csrf_trusted_origins", "model_base_urls", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def standalone_database(self) -> bool:
        return not self.database_url

    @property
    def standalone_broker(self) -> bool:
        return not self.redis_url

    @cached_property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def effective_secret_key(self) -> str:
        """The secret key, refusing weak ones outside debug.

        Standalone (SQLite) installs get a random key generated once into the data
        directory; a server on PostgreSQL must be given one, because every web and worker
        process must share it.
        """
        key = self.secret_key
        if key:
            if not self.debug and (
                len(key) < 32 or key.lower().startswith(INSECURE_SECRET_PREFIXES)
            ):
                raise InsecureConfiguration(
                    "SECRET_KEY is a default or shorter than 32 characters; set a long random "
                    "value (or DEBUG=1 for local development)."
                )
            return key
        if self.standalone_database:
            return self._data_dir_secret()
        if self.debug:
            return "django-insecure-debug-only-" + "x" * 32
        raise InsecureConfiguration(
            "SECRET_KEY is not set. Every web and worker process needs the same secret: "
            "set SECRET_KEY to a long random value (or DEBUG=1 for local development)."
        )

    def _data_dir_secret(self) -> str:
        path = self.resolved_data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(50))
            path.chmod(0o600)
        return path.read_text().strip()


class InsecureConfiguration(RuntimeError):
    pass


def load() -> Config:
    return Config()
