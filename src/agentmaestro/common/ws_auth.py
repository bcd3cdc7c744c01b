"""Who is on the other end of a WebSocket, and may they be there.

Programs send ``Authorization: Bearer <token>`` on the handshake (they send no
``Origin``); browsers send their session cookie, and such a handshake must come from
an allowed origin, or any page on the web could open a socket with the user's
cookie. The verdict is put in the scope; consumers close refused sockets with the
documented close codes (docs/websockets.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http.request import validate_host

from agentmaestro.accounts.services import api_token_authenticate


def origin_allowed(origin: str | None) -> bool:
    if not origin:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    allowed = list(settings.ALLOWED_HOSTS)
    return validate_host(parts.hostname, allowed) or validate_host(host, allowed)


@database_sync_to_async
def _token_user(raw: str) -> AbstractBaseUser | None:
    return api_token_authenticate(raw)


class WebSocketAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scope = dict(scope)
        if authorization[:7].lower() == "bearer ":
            user = await _token_user(authorization[7:].strip())
            scope["user"] = user or AnonymousUser()
            scope["auth_method"] = "token" if user else None
            # A browser cannot set this header on a WebSocket handshake, so a bearer
            # handshake is not a cross-site request; Origin is not required.
            scope["origin_ok"] = True
        else:
            user = await get_user(scope)
            scope["user"] = user
            scope["auth_method"] = "session" if user.is_authenticated else None
            scope["origin_ok"] = origin_allowed(headers.get(b"origin", b"").decode("latin-1"))
        return await super().__call__(scope, receive, send)
