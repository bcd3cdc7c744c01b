from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentmaestro.runs.events import docs


class Command(BaseCommand):
    help = "Regenerate docs/events.md from the event contracts (or check that it is current)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit non-zero if the file is stale; write nothing.",
        )

    def handle(self, *args: Any, check: bool, **options: Any) -> None:
        if check:
            current = docs.DOC_PATH.read_text() if docs.DOC_PATH.exists() else ""
            if current != docs.render():
                raise CommandError(f"{docs.DOC_PATH} is stale: run ./dev eventdocs")
            self.stdout.write(f"{docs.DOC_PATH} is current.")
            return
        changed = docs.write()
        self.stdout.write(f"{'Wrote' if changed else 'Unchanged:'} {docs.DOC_PATH}")
