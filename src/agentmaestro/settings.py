"""Django settings. All values come from :mod:`agentmaestro.config`; nothing secret lives here."""

from __future__ import annotations

from typing import Any

import dj_database_url

from agentmaestro import config as _config
from agentmaestro.common import broker

CONFIG = _config.load()

DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.effective_secret_key()
ALLOWED_HOSTS = CONFIG.allowed_hosts
CSRF_TRUSTED_ORIGINS = CONFIG.csrf_trusted_origins

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",  # the API docs page's templates and static files
    "agentmaestro.common",
    "agentmaestro.accounts",
    "agentmaestro.workspaces",
    "agentmaestro.agents",
    "agentmaestro.tools",
    "agentmaestro.runs",
    "agentmaestro.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "agentmaestro.urls"
ASGI_APPLICATION = "agentmaestro.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    if CONFIG.database_url:
        db: dict[str, Any] = dict(
            dj_database_url.parse(
                CONFIG.database_url, conn_max_age=CONFIG.conn_max_age, conn_health_checks=True
            )
        )
        # Bind parameters on the server and prepare statements used 5+ times: the event
        # append's parameters (arrays then) cost 0.1-0.2 ms per commit to quote client-side
        # (bench/events.py: 8 writers went from 0.53x to 0.62x of plain psycopg).
        db.setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})
        if CONFIG.db_pool_size:
            # Django's psycopg pool; it replaces persistent connections.
            db["CONN_MAX_AGE"] = 0
            db["OPTIONS"]["pool"] = {
                "min_size": 1,
                "max_size": CONFIG.db_pool_size,
                "timeout": 30,
            }
        return db
    data_dir = CONFIG.resolved_data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(data_dir / "db.sqlite3"),
        "OPTIONS": {
            # Writers serialize on BEGIN IMMEDIATE instead of failing on lock upgrade;
            # WAL lets readers (the stream consumers) proceed beside one writer.
            "transaction_mode": "IMMEDIATE",
            "timeout": 5,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                "PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;"
            ),
        },
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CHANNEL_LAYERS: dict[str, Any]
if CONFIG.redis_url:
    CHANNEL_LAYERS = {
        "default": {
            # Chosen by measurement (bench/events.py prints both): the pub/sub layer
            # delivers group messages with ~4x lower latency than the list-based core
            # layer, and it polls with a short timeout, so redis-py 8's 5 s default
            # socket timeout cannot close idle WebSockets (channels_redis#422).
            # AGENTMAESTRO_CHANNEL_LAYER=core selects the core layer, for comparison; its
            # hosts must stay dicts with a socket_timeout above its 5 s blocking pop.
            "BACKEND": (
                "channels_redis.core.RedisChannelLayer"
                if CONFIG.channel_layer == "core"
                else "channels_redis.pubsub.RedisPubSubChannelLayer"
            ),
            "CONFIG": {
                "hosts": [{"address": CONFIG.redis_url, "socket_timeout": 10}],
                "prefix": "am",
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000},
        }
    }

# Celery: every setting here is about not losing or duplicating work (docs/engine.md).
# memory:// names a host so kombu does not warn "No hostname was supplied" at every start.
CELERY_BROKER_URL = CONFIG.redis_url or "memory://localhost/"
# kombu's Redis transport, without a new client object per command (common/broker.py).
CELERY_BROKER_TRANSPORT = broker.transport_for(CELERY_BROKER_URL)
# Ack a task after it ran, not when it was received: a worker killed mid-task leaves
# the message to be delivered again (every task is idempotent: claims are conditional).
CELERY_TASK_ACKS_LATE = True
# ...and when a worker process dies (SIGKILL, OOM), requeue its task at once.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Hold at most one unacknowledged message per worker slot, so a crash strands little.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    # Redis redelivers a message nobody acknowledged after this long. Well above any
    # task's time limit, so a slow task is never run twice at once; stranded messages
    # are re-enqueued sooner by the reconciler, which needs no broker help.
    "visibility_timeout": 3600,
    # The in-process memory:// broker of standalone polls; the default 1 s is slow.
    "polling_interval": 0.05,
}
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "ticks"
CELERY_TASK_ROUTES = {
    "runs.tick": {"queue": "ticks"},
    "runs.reconcile": {"queue": "ticks"},
    "runs.model_call": {"queue": "activities"},
    "runs.tool_call": {"queue": "activities"},
}
CELERY_BEAT_SCHEDULE = {
    "reconcile": {"task": "runs.reconcile", "schedule": CONFIG.reconcile_seconds},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = str(CONFIG.resolved_data_dir / "static")
# The console's own login: the admin's refuses users who are not staff (most members).
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "console:login"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SAMESITE = "Lax"

AGENTMAESTRO_WS_HEARTBEAT_SECONDS = CONFIG.ws_heartbeat_seconds

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": CONFIG.log_level},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
