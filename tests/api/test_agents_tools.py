"""Agents (CRUD) and tool definitions over the API."""

from __future__ import annotations

from typing import Any

import pytest

from agentmaestro.agents.models import Agent
from agentmaestro.tools.models import ToolDefinition
from tests.api.conftest import Clients
from tests.api.helpers import assert_error
from tests.factories import Personas

ROLES = ["owner", "admin", "member", "viewer"]
NEW_AGENT: dict[str, Any] = {
    "slug": "writer",
    "name": "Writer",
    "model_settings": {"provider": "scripted", "script": []},
    "tool_policy": {"echo": {"mode": "approve", "approver_role": "admin"}},
    "max_steps": 7,
}


@pytest.mark.parametrize("role", ROLES)
def test_every_member_reads_agents(api: Clients, personas: Personas, role: str) -> None:
    client = api.by_role(role)
    listed = client.get("/workspaces/acme/agents/")
    assert [a["slug"] for a in listed.json()["items"]] == ["helper"]
    by_slug = client.get("/workspaces/acme/agents/helper/").json()
    by_id = client.get(f"/workspaces/acme/agents/{personas.agent.id}/").json()
    assert by_slug == by_id
    assert by_slug["id"] == str(personas.agent.id)


def test_another_workspaces_agent_is_not_found(api: Clients, personas: Personas) -> None:
    assert_error(
        api.member.get(f"/workspaces/acme/agents/{personas.other_agent.id}/"), 404, "not_found"
    )
    assert_error(api.member.get("/workspaces/globex/agents/"), 404, "not_found")
    assert_error(api.outsider.get("/workspaces/acme/agents/helper/"), 404, "not_found")


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_admins_and_owners_create_change_and_delete_agents(api: Clients, role: str) -> None:
    client = api.by_role(role)
    created = client.post("/workspaces/acme/agents/", NEW_AGENT)
    assert created.status_code == 201, created.content
    assert created.json()["tool_policy"] == NEW_AGENT["tool_policy"]
    changed = client.patch("/workspaces/acme/agents/writer/", {"name": "Scribe", "max_steps": 9})
    assert changed.status_code == 200
    agent = Agent.objects.get(slug="writer")
    assert (agent.name, agent.max_steps, agent.model_settings["provider"]) == (
        "Scribe",
        9,
        "scripted",
    )
    assert client.delete(f"/workspaces/acme/agents/{agent.id}/").status_code == 204
    assert not Agent.objects.filter(slug="writer").exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_write_agents(api: Clients, role: str) -> None:
    client = api.by_role(role)
    assert_error(client.post("/workspaces/acme/agents/", NEW_AGENT), 403, "forbidden")
    assert_error(client.patch("/workspaces/acme/agents/helper/", {"name": "X"}), 403, "forbidden")
    assert_error(client.delete("/workspaces/acme/agents/helper/"), 403, "forbidden")
    assert Agent.objects.get(slug="helper").name == "Helper"


def test_agent_conflicts(api: Clients, personas: Personas) -> None:
    assert_error(
        api.admin.post("/workspaces/acme/agents/", {**NEW_AGENT, "slug": "helper"}),
        409,
        "agent_slug_taken",
    )
    api.admin.post("/workspaces/acme/agents/", NEW_AGENT)
    assert_error(
        api.admin.patch("/workspaces/acme/agents/writer/", {"slug": "helper"}),
        409,
        "agent_slug_taken",
    )
    personas.run()
    assert_error(api.admin.delete("/workspaces/acme/agents/helper/"), 409, "agent_in_use")


@pytest.mark.parametrize(
    "change",
    [
        {"max_steps": 0},
        {"max_steps": 10**20},
        {"tool_policy": {"echo": {"mode": "sometimes"}}},
        {"model_settings": ["not", "an", "object"]},
        {"slug": "Not a slug"},
    ],
)
def test_invalid_agent_fields_are_a_422(api: Clients, change: dict[str, Any]) -> None:
    assert_error(
        api.admin.post("/workspaces/acme/agents/", {**NEW_AGENT, **change}), 422, "invalid_input"
    )
    assert_error(api.admin.patch("/workspaces/acme/agents/helper/", change), 422, "invalid_input")


@pytest.mark.parametrize("role", ROLES)
def test_every_member_reads_tools(api: Clients, personas: Personas, role: str) -> None:
    ToolDefinition.objects.create(workspace=personas.workspace, name="echo", executor="builtin")
    ToolDefinition.objects.create(
        workspace=personas.other_workspace, name="secret", executor="builtin"
    )
    response = api.by_role(role).get("/workspaces/acme/tools/")
    assert [t["name"] for t in response.json()["items"]] == ["echo"]


def test_an_admin_defines_a_tool(api: Clients, personas: Personas) -> None:
    body = {
        "name": "lookup",
        "executor": "toolrunner",
        "risk_level": "ELEVATED",
        "args_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    created = api.admin.post("/workspaces/acme/tools/", body)
    assert created.status_code == 201, created.content
    tool = ToolDefinition.objects.get(name="lookup")
    assert (tool.workspace_id, tool.risk_level) == (personas.workspace.id, "ELEVATED")
    assert_error(api.admin.post("/workspaces/acme/tools/", body), 409, "tool_name_taken")
    sub = {"name": "delegate", "executor": "subagent", "target_agent": "helper"}
    assert api.owner.post("/workspaces/acme/tools/", sub).json()["target_agent_id"] == str(
        personas.agent.id
    )


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_cannot_define_tools(api: Clients, role: str) -> None:
    body = {"name": "lookup", "executor": "toolrunner"}
    assert_error(api.by_role(role).post("/workspaces/acme/tools/", body), 403, "forbidden")
    assert_error(api.outsider.post("/workspaces/acme/tools/", body), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "bad name", "executor": "builtin"}, "invalid_input"),
        ({"name": "x", "executor": "teleport"}, "invalid_input"),
        (
            {"name": "x", "executor": "builtin", "args_schema": {"type": 12}},
            "invalid_tool_definition",
        ),
        ({"name": "x", "executor": "subagent"}, "invalid_tool_definition"),
        ({"name": "x", "executor": "builtin", "target_agent": "helper"}, "invalid_tool_definition"),
    ],
)
def test_invalid_tools_are_a_422(api: Clients, body: dict[str, Any], code: str) -> None:
    assert_error(api.admin.post("/workspaces/acme/tools/", body), 422, code)


def test_timestamps_leave_the_api_in_one_form(api: Clients, personas: Personas) -> None:
    """Every timestamp the API returns is written as events and snapshots write theirs
    (common.time.iso: ``+00:00``), not in pydantic's own form (``Z``)."""
    from agentmaestro.common.time import iso
    from agentmaestro.workspaces.models import Workspace

    ToolDefinition.objects.create(workspace=personas.workspace, name="echo", executor="builtin")
    agent = Agent.objects.get(id=personas.agent.id)
    got = api.member.get("/workspaces/acme/agents/helper/").json()
    assert (got["created_at"], got["updated_at"]) == (iso(agent.created_at), iso(agent.updated_at))
    workspace = api.member.get("/workspaces/acme/").json()
    assert workspace["created_at"] == iso(Workspace.objects.get(slug="acme").created_at)
    tools = api.member.get("/workspaces/acme/tools/").json()["items"]
    by_name = {t.name: t for t in ToolDefinition.objects.filter(workspace__slug="acme")}
    assert tools
    assert all(t["created_at"] == iso(by_name[t["name"]].created_at) for t in tools)
    stamps = [got["created_at"], workspace["created_at"], *(t["created_at"] for t in tools)]
    assert all(s.endswith("+00:00") for s in stamps), stamps
