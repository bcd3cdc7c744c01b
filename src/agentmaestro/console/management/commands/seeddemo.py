from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from agentmaestro.console.demo import DEMO_USERNAME, demo_credentials, seed_demo


class Command(BaseCommand):
    help = (
        f"Create the demo data if it is missing: user {DEMO_USERNAME!r} (staff and "
        "superuser) with a random password, workspace 'demo' owned by it with the "
        "built-in tools, the scripted agent 'demo-agent' (no model provider needed), an "
        "API token, and one demo run of that agent, whose first tick is enqueued for a "
        "worker to run it (with no REDIS_URL, only 'agentmaestro standalone' runs one, and "
        "it picks the run up when it starts). Idempotent: a second call creates nothing. "
        "The password and the token are printed only by the call that creates them. "
        "'agentmaestro standalone' runs this at every start."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        seed = seed_demo()
        if seed.created:
            for item in seed.created:
                self.stdout.write(f"Created {item}.")
        else:
            self.stdout.write("The demo data already exists; nothing created.")
        for label, text in demo_credentials(seed):
            self.stdout.write(f"{label}: {text}")
        self.stdout.write(f"Demo run: /runs/{seed.run.id}/stream/")
