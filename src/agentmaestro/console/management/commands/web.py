from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentmaestro.console.serving import port_in_use, port_number, positive_int, serve

APPLICATION = "agentmaestro.asgi:application"

# The PostgreSQL connection pool of a web process when AGENTMAESTRO_DB_POOL_SIZE is unset.
# Under ASGI, Django runs each request in a thread of its own, and a persistent connection
# (CONN_MAX_AGE > 0) belongs to its thread: every request left one connection open, and 20
# API clients exhausted PostgreSQL's max_connections (100) in about a second. A pool
# (which also sets CONN_MAX_AGE to 0) hands each request a connection and takes it back.
WEB_DB_POOL_SIZE = 8


def web_environment_defaults(environ: MutableMapping[str, str]) -> None:
    """Give a web process on PostgreSQL its connection pool, unless one is configured.

    The CLI calls this before Django reads its settings (they are read once, and a pool
    cannot be added to them afterwards); uvicorn's ``--workers`` children inherit it.
    """
    if _is_postgresql(environ.get("DATABASE_URL")):
        environ.setdefault("AGENTMAESTRO_DB_POOL_SIZE", str(WEB_DB_POOL_SIZE))


def _is_postgresql(database_url: str | None) -> bool:
    return database_url is not None and database_url.split(":", 1)[0].startswith(
        ("postgres", "postgis")
    )


class Command(BaseCommand):
    help = (
        "Serve the web application (HTTP, the admin and WebSockets) with uvicorn: the web "
        "process of the distributed deployment, run beside PostgreSQL (DATABASE_URL) and "
        "Redis (REDIS_URL). It needs SECRET_KEY, the same in every web and worker process, "
        "and refuses to start without it. It does not migrate (run 'agentmaestro migrate' "
        "once per release) and does not serve static files: run 'agentmaestro "
        "collectstatic' and serve STATIC_ROOT at /static/ from the reverse proxy. For one "
        "machine with nothing else installed, use 'agentmaestro standalone'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="Interface to listen on (default: 127.0.0.1)."
        )
        parser.add_argument(
            "--port", type=port_number, default=8000, help="TCP port (default: 8000)."
        )
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=1,
            help="Server processes sharing the port (default: 1). More than one needs "
            "REDIS_URL: the in-memory channel layer cannot reach across processes.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host: str = options["host"]
        port: int = options["port"]
        workers: int = options["workers"]
        config = settings.CONFIG
        if workers > 1 and config.standalone_broker:
            raise CommandError(
                "--workers above 1 needs REDIS_URL: without it the channel layer is in "
                "memory, and an event committed in one process would never reach a "
                "WebSocket held by another."
            )
        if config.standalone_database:
            self.stderr.write(
                "Warning: DATABASE_URL is not set, so this serves the SQLite database in "
                f"{config.resolved_data_dir}. The distributed deployment uses PostgreSQL.",
                style_func=self.style.WARNING,
            )
        elif (
            _is_postgresql(config.database_url)
            and config.db_pool_size == 0
            and config.conn_max_age > 0
        ):
            self.stderr.write(
                "Warning: AGENTMAESTRO_DB_POOL_SIZE=0 with CONN_MAX_AGE above 0: under ASGI "
                "every request keeps a PostgreSQL connection of its own open, until "
                "PostgreSQL refuses new ones. Leave AGENTMAESTRO_DB_POOL_SIZE unset (a pool "
                f"of {WEB_DB_POOL_SIZE}) or set CONN_MAX_AGE=0.",
                style_func=self.style.WARNING,
            )
        if port_in_use(host, port):
            raise CommandError(f"Cannot listen on {host}:{port}: it is in use.")
        serve(APPLICATION, host=host, port=port, workers=workers)
