"""API tokens over the API: created once in plaintext, listed without secrets, revoked."""

from __future__ import annotations

from agentmaestro.accounts.models import ApiToken
from tests.api.conftest import Clients
from tests.api.helpers import ApiClient, assert_error
from tests.factories import Personas


def test_a_new_token_is_shown_once_and_works(api: Clients, personas: Personas) -> None:
    created = api.member.post("/tokens/", {"name": "ci"})
    assert created.status_code == 201
    body = created.json()
    raw = body["token"]
    assert raw.startswith(body["prefix"])
    stored = ApiToken.objects.get(pk=body["id"])
    assert raw not in {stored.digest, stored.prefix}
    assert len(stored.digest) == 64
    assert ApiClient(token=raw).get("/me/").json()["username"] == "member-user"
    listed = api.member.get("/tokens/").json()["items"]
    assert {t["name"] for t in listed} == {"ci", "tests"}
    assert all("token" not in t and raw not in str(t) for t in listed)


def test_tokens_are_private_to_their_user(api: Clients) -> None:
    mine = api.member.post("/tokens/", {"name": "mine"}).json()
    assert "mine" not in {t["name"] for t in api.viewer.get("/tokens/").json()["items"]}
    assert_error(api.viewer.delete(f"/tokens/{mine['id']}/"), 404, "not_found")
    assert ApiClient(token=mine["token"]).get("/me/").status_code == 200


def test_a_revoked_token_stops_working(api: Clients) -> None:
    other = api.member.post("/tokens/", {}).json()
    assert api.member.delete(f"/tokens/{other['id']}/").status_code == 204
    assert_error(ApiClient(token=other["token"]).get("/me/"), 401, "invalid_token")
    assert api.member.delete(f"/tokens/{other['id']}/").status_code == 204  # idempotent
    listed = {t["id"]: t for t in api.member.get("/tokens/").json()["items"]}
    assert listed[other["id"]]["revoked_at"] is not None


def test_invalid_token_requests(api: Clients) -> None:
    assert_error(api.member.post("/tokens/", {"name": "x" * 101}), 422, "invalid_input")
    assert_error(api.member.delete("/tokens/0/"), 422, "invalid_input")
    assert_error(api.member.delete(f"/tokens/{2**70}/"), 422, "invalid_input")
    assert_error(api.anonymous.post("/tokens/", {}), 401, "not_authenticated")
