"""Running the ASGI application under uvicorn, for ``agentmaestro standalone`` and ``web``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

# Seconds uvicorn waits for open connections (live WebSockets) after Ctrl-C before it
# closes them anyway.
GRACEFUL_SHUTDOWN_SECONDS = 5


def display_host(host: str) -> str:
    """A host a browser can open: the wildcard addresses are reached through loopback."""
    if host in ("0.0.0.0", ""):  # noqa: S104 — comparing, not binding
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def base_url(host: str, port: int) -> str:
    return f"http://{display_host(host)}:{port}"


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    workers: int = 1,
    on_shutdown: Callable[[], None] | None = None,
    **options: Any,
) -> None:
    """Serve until Ctrl-C, then shut down gracefully and return.

    On SIGTERM the shutdown is as graceful, but uvicorn then re-raises the signal, so the
    process ends by it (as a supervisor expects).

    ``app`` is an ASGI application, or an import string (required for ``workers > 1``).
    Lifespan is on: the application's startup binds the event broadcaster to the
    server's loop, which the in-memory channel layer needs. A server that cannot start
    (the port is taken) exits the process with uvicorn's status 3, after its log line.

    ``on_shutdown`` (one server process only) is called, off the event loop, once the
    server has closed its connections and before a SIGTERM is re-raised: the place to
    stop what the process runs beside the server.
    """
    if on_shutdown is None:
        uvicorn.run(
            app,
            host=host,
            port=port,
            workers=workers,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            **options,
        )
        return
    if workers != 1:
        raise ValueError("on_shutdown needs a single server process")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **options,
    )
    server = _Server(config, on_shutdown)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class _Server(uvicorn.Server):
    """A uvicorn server that calls ``on_shutdown`` after its own graceful shutdown."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            await asyncio.to_thread(self._on_shutdown)


def port_number(value: str) -> int:
    """An argparse type: a TCP port."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, not {port}")
    return port


def positive_int(value: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails now (a friendlier error than uvicorn's, earlier)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host.strip("[]"), port), family=family):
            return False
    except OSError:
        return True
