from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentmaestro.console.serving import port_in_use, port_number, positive_int, serve

APPLICATION = "agentmaestro.asgi:application"


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
        if port_in_use(host, port):
            raise CommandError(f"Cannot listen on {host}:{port}: it is in use.")
        serve(APPLICATION, host=host, port=port, workers=workers)
