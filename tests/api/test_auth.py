"""Who may call the API: bearer tokens, the browser session with CSRF, nobody else."""

from __future__ import annotations

import pytest
from django.test import Client

from agentmaestro.accounts.services import api_token_create, api_token_revoke
from tests.api.conftest import Clients
from tests.api.helpers import API, ApiClient, assert_error
from tests.factories import Personas


def test_a_token_authenticates(api: Clients, personas: Personas) -> None:
    response = api.member.get("/me/")
    assert response.status_code == 200
    assert response.json() == {"id": personas.member.pk, "username": "member-user"}


@pytest.mark.parametrize(
    "path", ["/me/", "/workspaces/", "/tokens/", "/workspaces/acme/runs/", "/workspaces/acme/"]
)
def test_no_credentials_is_a_401(api: Clients, path: str) -> None:
    response = api.anonymous.get(path)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_post_without_credentials_is_a_401_not_a_csrf_failure(api: Clients) -> None:
    assert_error(
        api.anonymous.post("/workspaces/acme/runs/", {"agent": "helper"}), 401, "not_authenticated"
    )


@pytest.mark.parametrize("token", ["am_not-a-real-token", "garbage", "am_" + "x" * 300])
def test_an_unknown_token_is_a_401(db: None, token: str) -> None:
    assert_error(ApiClient(token=token).get("/me/"), 401, "invalid_token")


def test_a_revoked_token_is_a_401(personas: Personas) -> None:
    token, raw = api_token_create(user=personas.member)
    client = ApiClient(token=raw)
    assert client.get("/me/").status_code == 200
    api_token_revoke(user=personas.member, token_id=token.pk)
    assert_error(client.get("/me/"), 401, "invalid_token")


def test_an_inactive_users_token_is_a_401(personas: Personas) -> None:
    _, raw = api_token_create(user=personas.member)
    personas.member.is_active = False
    personas.member.save()
    assert_error(ApiClient(token=raw).get("/me/"), 401, "invalid_token")


def test_a_wrong_token_is_refused_even_beside_a_valid_session(personas: Personas) -> None:
    client = Client()
    client.force_login(personas.member)
    response = client.get(f"{API}/me/", headers={"Authorization": "Bearer am_wrong"})
    assert_error(response, 401, "invalid_token")


def test_the_session_authenticates_reads(personas: Personas) -> None:
    client = Client()
    client.force_login(personas.viewer)
    response = client.get(f"{API}/workspaces/")
    assert response.status_code == 200
    assert [w["slug"] for w in response.json()["items"]] == ["acme"]


def test_a_session_write_needs_the_csrf_token(personas: Personas) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.member)
    url = f"{API}/workspaces/acme/runs/"
    body = '{"agent": "helper", "input": {"prompt": "hi"}}'
    refused = client.post(url, body, content_type="application/json")
    assert_error(refused, 403, "csrf_failed")
    client.get("/", follow=True)  # the console's dashboard sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    accepted = client.post(
        url, body, content_type="application/json", headers={"X-CSRFToken": csrf}
    )
    assert accepted.status_code == 201, accepted.content


def test_the_openapi_document_and_the_docs_page_are_public(db: None) -> None:
    client = Client()
    document = client.get(f"{API}/openapi.json")
    assert document.status_code == 200
    schema = document.json()
    assert schema["info"]["title"] == "AgentMaestro API"
    assert "/api/v1/workspaces/{workspace_id}/runs/" in schema["paths"]
    assert set(schema["components"]["securitySchemes"]) == {"BearerToken", "BrowserSession"}
    docs = client.get(f"{API}/docs")
    assert docs.status_code == 200
    assert b"openapi.json" in docs.content
