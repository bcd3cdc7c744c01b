import json

import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from agentmaestro.accounts.services import api_token_create
from tests.factories import make_personas

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_token_client_gets_the_runs_events(web_server):
    personas = await sync_to_async(make_personas)()
    run = await sync_to_async(personas.run)()
    _, token = await sync_to_async(api_token_create)(user=personas.viewer)
    async with websockets.connect(
        f"{web_server.ws_url}/ws/runs/{run.id}/?since_seq=0",
        additional_headers={"Authorization": f"Bearer {token}"},
    ) as ws:
        frame = json.loads(await ws.recv())
        assert frame["seq"] == 1
        assert frame["event_type"] == "run.created"
