"""The ASGI application: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmaestro.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

from agentmaestro.common.ws_auth import WebSocketAuthMiddleware  # noqa: E402
from agentmaestro.routing import websocket_urlpatterns  # noqa: E402
from agentmaestro.runs.events.broadcast import broadcaster  # noqa: E402

Scope = dict[str, Any]

django_http = get_asgi_application()


async def lifespan(scope: Scope, receive: Any, send: Any) -> None:
    """Bind the broadcaster to the server's loop, where the in-memory layer lives."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            broadcaster.bind_loop(asyncio.get_running_loop())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": django_http,
        "websocket": CookieMiddleware(
            SessionMiddleware(WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
        "lifespan": lifespan,
    }
)
