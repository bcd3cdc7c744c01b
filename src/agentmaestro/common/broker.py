"""Celery's Redis broker transport, keeping one Redis client per channel.

kombu's Redis channel (5.7) builds a new ``redis.Redis`` client around its connection
pool for every command it sends: each publish, and each message received and
acknowledged. On redis-py 8 building one costs more than the command it sends (it sets
up an event dispatcher with its listeners every time): ~9% of a busy worker's Python
time, and ~17% of an ``apply_async`` (bench/engine.py, py-spy and cProfile).

A client over a connection pool is thread-safe — every command takes a connection from
the pool and gives it back — so one per channel and pool does the same work. When kombu
drops the channel's pools (after a connection error), the next command makes a new
client around the new pool.

``settings.py`` selects this transport for ``redis://`` broker URLs
(:func:`transport_for`); whatever points Celery at another URL must select again.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

# kombu's type stubs leave out the channel's private client factory.
_kombu_create_client: Any = kombu_redis.Channel._create_client  # type: ignore[attr-defined]


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return _kombu_create_client(self, asynchronous=True)
        pool = self.pool
        client = self._shared_client
        if client is None or client.connection_pool is not pool:
            client = self._shared_client = _kombu_create_client(self)
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """Celery's ``broker_transport`` for ``broker_url``: this transport for ``redis://``,
    else None (the URL's scheme decides: ``memory://``, ``rediss://`` …)."""
    return f"{__name__}:Transport" if broker_url.startswith("redis://") else None
