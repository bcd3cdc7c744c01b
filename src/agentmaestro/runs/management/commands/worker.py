from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Run a Celery worker for the engine. Ticks (short, CPU-light) and activities "
        "(model and tool calls, slow I/O) are separate queues; run one worker per kind "
        "in production, e.g. '--queues ticks --pool prefork --concurrency 2' and "
        "'--queues activities --pool threads --concurrency 200'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", default="ticks,activities", help="Comma-separated.")
        parser.add_argument(
            "--pool", default="threads", choices=["threads", "prefork", "solo", "gevent"]
        )
        parser.add_argument("--concurrency", type=int, default=8)
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument("--hostname", default=None, help="Celery node name.")

    def handle(self, *args: Any, **options: Any) -> None:
        from agentmaestro.celery import app

        argv = [
            "worker",
            f"--queues={options['queues']}",
            f"--pool={options['pool']}",
            f"--concurrency={options['concurrency']}",
            f"--loglevel={options['loglevel']}",
            "--without-gossip",
            "--without-mingle",
        ]
        if options["hostname"]:
            argv.append(f"--hostname={options['hostname']}")
        app.worker_main(argv)
