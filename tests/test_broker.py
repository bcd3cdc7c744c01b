"""The Redis broker transport (common/broker.py): one client per channel, on real Redis."""

from __future__ import annotations

from django.conf import settings
from kombu import Connection

from agentmaestro.common import broker


def test_settings_select_it_for_redis_urls_only() -> None:
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert settings.CELERY_BROKER_TRANSPORT == "agentmaestro.common.broker:Transport"
    assert broker.transport_for("memory://localhost/") is None
    assert broker.transport_for("rediss://example:6380/0") is None


def test_a_channel_keeps_one_client_until_kombu_drops_its_pool() -> None:
    url = settings.CELERY_BROKER_URL
    with Connection(url, transport=broker.transport_for(url)) as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker.Channel)
        queue = conn.SimpleQueue("agentmaestro-test-broker")
        try:
            queue.clear()
            client = channel._create_client()
            queue.put({"n": 1})
            message = queue.get(timeout=5)
            message.ack()
            assert message.payload == {"n": 1}
            # Publishing, receiving and acknowledging all went through the one client.
            assert channel._create_client() is client

            channel._disconnect_pools()  # what kombu does after a connection error
            renewed = channel._create_client()
            assert renewed is not client
            assert renewed.connection_pool is channel.pool
            queue.put({"n": 2})
            again = queue.get(timeout=5)
            again.ack()
            assert again.payload == {"n": 2}
        finally:
            queue.clear()
            queue.close()
