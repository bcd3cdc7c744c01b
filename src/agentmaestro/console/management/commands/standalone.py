from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from agentmaestro.console.demo import DemoSeed, demo_credentials, seed_demo
from agentmaestro.console.serving import base_url, port_in_use, port_number, serve


class Command(BaseCommand):
    help = (
        "Run AgentMaestro in one process, with nothing else installed: with DATABASE_URL "
        "and REDIS_URL unset, the database is SQLite in the data directory and the channel "
        "layer is in memory. Every start migrates the database; the first one also "
        "creates the demo user, workspace, agent, API token and run, and prints the demo "
        "password and token (once). Then it serves the console, the admin (with its "
        "static files) and the WebSockets until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="Interface to listen on (default: 127.0.0.1). With 0.0.0.0, add the "
            "names browsers will use to ALLOWED_HOSTS.",
        )
        parser.add_argument(
            "--port", type=port_number, default=8000, help="TCP port (default: 8000)."
        )
        parser.add_argument(
            "--data-dir",
            metavar="DIR",
            help="Where the SQLite database and the generated secret key live (default: "
            "$AGENTMAESTRO_DATA_DIR, else .agentmaestro/ in the current directory). Other "
            "commands find the same data through AGENTMAESTRO_DATA_DIR.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host: str = options["host"]
        port: int = options["port"]
        config = settings.CONFIG
        data_dir = config.resolved_data_dir
        asked = options["data_dir"]
        if asked and Path(asked).expanduser().resolve() != data_dir:
            # Only the agentmaestro command exports --data-dir before settings load.
            raise CommandError(
                f"Settings were loaded with the data directory {data_dir}; run "
                "'agentmaestro standalone --data-dir …' or set AGENTMAESTRO_DATA_DIR."
            )
        if port_in_use(host, port):
            raise CommandError(
                f"Cannot listen on {host}:{port}: it is in use. Choose another with --port."
            )
        call_command("migrate", interactive=False, verbosity=0)
        seed = seed_demo()
        # The server runs requests in its own threads; this one's connection is done.
        connections.close_all()
        self._banner(seed, host, port)

        from agentmaestro.asgi import application

        # Standalone has no reverse proxy in front, so it serves the admin's CSS itself.
        serve(ASGIStaticFilesHandler(application), host=host, port=port, access_log=False)
        self.stdout.write("Stopped.")

    def _banner(self, seed: DemoSeed, host: str, port: int) -> None:
        config = settings.CONFIG
        url = base_url(host, port)
        if config.standalone_database:
            database = f"SQLite, {settings.DATABASES['default']['NAME']}"
        else:
            database = "PostgreSQL (DATABASE_URL is set)"
        layer = "in memory" if config.standalone_broker else "Redis (REDIS_URL is set)"
        lines = [
            "",
            f"AgentMaestro is running at {url}/",
            f"  Console:      {url}/",
            f"  Admin:        {url}/admin/",
            f"  Demo run:     {url}/runs/{seed.run.id}/stream/",
            *(f"  {label + ':':<13} {text}" for label, text in demo_credentials(seed)),
            f"  Data dir:     {config.resolved_data_dir}",
            f"  Database:     {database}; channel layer {layer}",
            "Press Ctrl-C to stop.",
            "",
        ]
        for line in lines:
            self.stdout.write(line)
        self.stdout.flush()
