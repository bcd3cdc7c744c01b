from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentmaestro.accounts.models import ApiToken
from agentmaestro.accounts.services import api_token_create, user_by_username


class Command(BaseCommand):
    help = (
        "Create an API token for USERNAME and print it on stdout. Programs send it as "
        "'Authorization: Bearer <token>' on HTTP and WebSocket requests. Only its SHA-256 "
        "digest is stored, so this is the only time it is shown; revoke it in the admin "
        "(API tokens)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user the token acts as.")
        parser.add_argument(
            "--name",
            default="",
            help="A label to recognise the token by in the admin (default: none).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        name: str = options["name"]
        max_name = ApiToken._meta.get_field("name").max_length or 0
        if len(name) > max_name:
            raise CommandError(f"--name is at most {max_name} characters.")
        user = user_by_username(username)
        if user is None:
            raise CommandError(
                f"No user named {username!r}. Create one first "
                "(agentmaestro createsuperuser, or in the admin)."
            )
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; its tokens would not work.")
        token, raw = api_token_create(user=user, name=name)
        # The token alone on stdout, so TOKEN=$(agentmaestro createtoken alice) works.
        self.stdout.write(raw)
        self.stderr.write(
            f"Created API token {token.prefix}… for {username}. It is shown only now: "
            "store it somewhere safe.",
            style_func=str,
        )
