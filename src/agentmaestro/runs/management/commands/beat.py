from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Run Celery beat: enqueues the reconciler every AGENTMAESTRO_RECONCILE_SECONDS. "
        "Run exactly one per deployment."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args: Any, **options: Any) -> None:
        from agentmaestro.celery import app

        app.start(["beat", f"--loglevel={options['loglevel']}"])
