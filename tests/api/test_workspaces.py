"""Workspaces and their members over the API."""

from __future__ import annotations

import pytest

from agentmaestro.workspaces.models import Role, WorkspaceMembership
from tests.api.conftest import Clients
from tests.api.helpers import assert_error
from tests.factories import Personas, make_user

ROLES = ["owner", "admin", "member", "viewer"]


def test_it_lists_only_my_workspaces_with_my_role(api: Clients) -> None:
    assert [(w["slug"], w["role"]) for w in api.viewer.get("/workspaces/").json()["items"]] == [
        ("acme", "viewer")
    ]
    assert [w["slug"] for w in api.outsider.get("/workspaces/").json()["items"]] == ["globex"]


def test_the_creator_becomes_owner(api: Clients, personas: Personas) -> None:
    response = api.viewer.post("/workspaces/", {"slug": "initech", "name": "Initech"})
    assert response.status_code == 201
    assert response.json()["role"] == "owner"
    membership = WorkspaceMembership.objects.get(workspace__slug="initech")
    assert (membership.user_id, membership.role) == (personas.viewer.pk, Role.OWNER)


def test_a_taken_slug_is_a_409(api: Clients) -> None:
    assert_error(
        api.member.post("/workspaces/", {"slug": "globex", "name": "Mine"}),
        409,
        "workspace_slug_taken",
    )


@pytest.mark.parametrize(
    "body", [{"slug": "no spaces", "name": "x"}, {"slug": "ok"}, {"slug": "ok", "name": ""}]
)
def test_an_invalid_workspace_is_a_422(api: Clients, body: dict[str, str]) -> None:
    assert_error(api.member.post("/workspaces/", body), 422, "invalid_input")


@pytest.mark.parametrize("ref", ["acme", "id"])
def test_a_workspace_is_addressed_by_slug_or_id(api: Clients, personas: Personas, ref: str) -> None:
    key = str(personas.workspace.id) if ref == "id" else "acme"
    response = api.viewer.get(f"/workspaces/{key}/")
    assert response.status_code == 200
    assert response.json()["id"] == str(personas.workspace.id)


def test_another_workspace_is_not_found(api: Clients, personas: Personas) -> None:
    assert_error(api.member.get("/workspaces/globex/"), 404, "not_found")
    assert_error(
        api.member.get(f"/workspaces/{personas.other_workspace.id}/members/"), 404, "not_found"
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_member_reads_the_members(api: Clients, role: str) -> None:
    response = api.by_role(role).get("/workspaces/acme/members/")
    assert response.status_code == 200
    assert {(m["username"], m["role"]) for m in response.json()["items"]} == {
        ("olive-owner", "owner"),
        ("admin-user", "admin"),
        ("member-user", "member"),
        ("viewer-user", "viewer"),
    }


def test_an_outsider_cannot_see_members(api: Clients) -> None:
    assert_error(api.outsider.get("/workspaces/acme/members/"), 404, "not_found")


@pytest.mark.parametrize("role", ["admin", "member", "viewer"])
def test_only_owners_manage_members(api: Clients, personas: Personas, role: str) -> None:
    make_user("newbie")
    client = api.by_role(role)
    assert_error(
        client.post("/workspaces/acme/members/", {"username": "newbie", "role": "viewer"}),
        403,
        "forbidden",
    )
    path = f"/workspaces/acme/members/{personas.viewer.pk}/"
    assert_error(client.patch(path, {"role": "admin"}), 403, "forbidden")
    assert_error(client.delete(path), 403, "forbidden")
    assert WorkspaceMembership.objects.get(user=personas.viewer).role == Role.VIEWER


def test_an_owner_adds_changes_and_removes_a_member(api: Clients) -> None:
    newbie = make_user("newbie")
    added = api.owner.post("/workspaces/acme/members/", {"username": "newbie", "role": "viewer"})
    assert added.status_code == 201
    assert added.json()["role"] == "viewer"
    path = f"/workspaces/acme/members/{newbie.pk}/"
    changed = api.owner.patch(path, {"role": "admin"})
    assert changed.status_code == 200
    assert changed.json()["role"] == "admin"
    assert api.owner.delete(path).status_code == 204
    assert not WorkspaceMembership.objects.filter(user=newbie).exists()
    assert_error(api.owner.delete(path), 404, "not_found")


def test_adding_twice_or_an_unknown_user_is_refused(api: Clients) -> None:
    body = {"username": "viewer-user", "role": "member"}
    assert_error(api.owner.post("/workspaces/acme/members/", body), 409, "already_member")
    body = {"username": "nobody", "role": "member"}
    assert_error(api.owner.post("/workspaces/acme/members/", body), 404, "not_found")
    body = {"username": "viewer-user", "role": "emperor"}
    assert_error(api.owner.post("/workspaces/acme/members/", body), 422, "invalid_input")


def test_the_last_owner_stays(api: Clients, personas: Personas) -> None:
    path = f"/workspaces/acme/members/{personas.owner.pk}/"
    assert_error(api.owner.patch(path, {"role": "admin"}), 409, "last_owner")
    assert_error(api.owner.delete(path), 409, "last_owner")
    api.owner.patch(f"/workspaces/acme/members/{personas.admin.pk}/", {"role": "owner"})
    assert api.owner.patch(path, {"role": "admin"}).status_code == 200


def test_an_owner_cannot_touch_another_workspaces_members(api: Clients, personas: Personas) -> None:
    path = f"/workspaces/globex/members/{personas.outsider.pk}/"
    assert_error(api.owner.delete(path), 404, "not_found")
