"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Against a real web process (uvicorn) on the test database, authenticated as a workspace
owner with a bearer token: every operation gets generated valid and invalid input, and
no response may be a 5xx, or disagree with the document (status, content type, body).
Path parameters naming the workspace, agent and run are pinned to real ones, so the
requests get past the 404 and exercise the handlers. Bounded: 5 examples per operation,
about 40 seconds in all.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agentmaestro.accounts.services import api_token_create
from agentmaestro.api import api
from agentmaestro.runs.services.runs import run_add_note
from tests.factories import make_personas
from tests.live import LiveServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def world(transactional_db: None) -> dict[str, str]:
    """Committed data the server process can see: personas, a run, the owner's token."""
    personas = make_personas()
    run = personas.run()
    run_add_note(run_id=run.id, message="something to read")
    _, token = api_token_create(user=personas.owner, name="fuzz")
    return {
        "token": token,
        "workspace_id": "acme",
        "agent_id": "helper",
        "run_id": str(run.id),
        "user_id": str(personas.viewer.pk),
    }


# The document the server serves at /api/v1/openapi.json (test_auth checks that it does).
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(api.get_openapi_schema())))


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_no_schema_violations(
    case: Any, web_server: LiveServer, world: dict[str, str]
) -> None:
    for name in list(case.path_parameters or {}):
        if name in world:
            case.path_parameters[name] = world[name]
    case.call_and_validate(
        base_url=web_server.url,
        headers={"Authorization": f"Bearer {world['token']}"},
        checks=CHECKS,
    )
