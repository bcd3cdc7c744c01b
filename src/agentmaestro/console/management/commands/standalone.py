from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from agentmaestro.console.demo import DemoSeed, demo_credentials, seed_demo
from agentmaestro.console.serving import base_url, port_in_use, port_number, serve
from agentmaestro.runs.inprocess import DEFAULT_CONCURRENCY, InProcessEngine, recover_on_start

LOCK_FILE = "standalone.lock"


class Command(BaseCommand):
    help = (
        "Run AgentMaestro in one process, with nothing else installed: with DATABASE_URL "
        "and REDIS_URL unset, the database is SQLite in the data directory, the channel "
        "layer is in memory and the Celery broker is in memory too. The engine runs in "
        f"the same process: a Celery worker ({DEFAULT_CONCURRENCY} threads, both queues) "
        "and Celery beat (the periodic reconciler). Every start migrates the database and "
        "re-enqueues the work of every unfinished run; the first one also creates the "
        "demo user, workspace, scripted agent, API token and a demo run (which the engine "
        "then runs), and prints the demo password and token (once). Then it serves the "
        "console, the admin (with its static files) and the WebSockets until Ctrl-C, which "
        "stops the server, the worker and beat."
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
            "commands find the same data through AGENTMAESTRO_DATA_DIR. One standalone "
            "process at a time may use a data directory.",
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
        # Held until the process ends (the kernel releases it even on SIGKILL).
        lock = _lock_data_dir(data_dir) if config.standalone_database else None
        call_command("migrate", interactive=False, verbosity=0)
        seed = seed_demo()

        engine = InProcessEngine()
        engine.start()
        try:
            # The in-memory broker starts empty: whatever was queued before a restart
            # is gone, so every unfinished run's work is enqueued again now. With SQLite
            # and no Redis this process is the only engine on the data (the lock above),
            # so claims left in the database died with the previous process.
            recover_on_start(
                leases_are_dead=config.standalone_database and config.standalone_broker
            )
            # The server and the worker use their own threads' connections.
            connections.close_all()
            self._banner(seed, host, port)

            from agentmaestro.asgi import application

            # Standalone has no reverse proxy in front, so it serves the admin's CSS itself.
            serve(
                ASGIStaticFilesHandler(application),
                host=host,
                port=port,
                access_log=False,
                on_shutdown=engine.stop,
            )
        finally:
            engine.stop()
            if lock is not None:
                lock.close()
        self.stdout.write("Stopped.")

    def _banner(self, seed: DemoSeed, host: str, port: int) -> None:
        config = settings.CONFIG
        url = base_url(host, port)
        if config.standalone_database:
            database = f"SQLite, {settings.DATABASES['default']['NAME']}"
        else:
            database = "PostgreSQL (DATABASE_URL is set)"
        layer = "in memory" if config.standalone_broker else "Redis (REDIS_URL is set)"
        broker = "in-memory broker" if config.standalone_broker else "Redis broker"
        lines = [
            "",
            f"AgentMaestro is running at {url}/",
            f"  Console:      {url}/   (start a new run of the demo agent there)",
            f"  Admin:        {url}/admin/",
            f"  Demo run:     {url}/runs/{seed.run.id}/stream/",
            *(f"  {label + ':':<13} {text}" for label, text in demo_credentials(seed)),
            f"  Data dir:     {config.resolved_data_dir}",
            f"  Database:     {database}; channel layer {layer}",
            f"  Engine:       in this process: Celery worker ({DEFAULT_CONCURRENCY} threads) "
            f"and beat, on the {broker}",
            "Press Ctrl-C to stop.",
            "",
        ]
        for line in lines:
            self.stdout.write(line)
        self.stdout.flush()


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """Take the data directory's lock, or stop: two engines must not share one SQLite file.

    The recovery at start treats every claim in the database as abandoned, which is
    only true when no other standalone process is running on the same data.
    """
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise CommandError(
            f"Another 'agentmaestro standalone' is running on the data directory {data_dir}; "
            "stop it first, or choose another directory with --data-dir."
        ) from None
    return handle
