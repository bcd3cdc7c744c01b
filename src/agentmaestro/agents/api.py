"""``/api/v1/workspaces/{workspace_id}/agents/``: everyone in the workspace reads agents;
admins and owners create, change and delete them. An agent is named by id or slug."""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from agentmaestro.agents.models import Agent
from agentmaestro.agents.selectors import agent_in_workspace, agent_list
from agentmaestro.agents.services import agent_create, agent_delete, agent_update
from agentmaestro.common.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    AgentPath,
    JsonObject,
    Slug,
    Text,
    Timestamp,
    WorkspacePath,
    request_user,
)
from agentmaestro.workspaces.models import Role
from agentmaestro.workspaces.selectors import workspace_for_user

router = Router(tags=["agents"])


class ToolPolicyIn(Schema):
    mode: Literal["allow", "approve", "deny"]
    approver_role: Role | None = None


class AgentCreateIn(Schema):
    slug: Slug
    name: Text = Field(min_length=1, max_length=200)
    description: Text = ""
    system_prompt: Text = ""
    model_settings: JsonObject = Field(
        default_factory=dict,
        description='{"provider": "scripted" | "openai" | "anthropic", "model": …, …}',
    )
    tool_policy: dict[Slug, ToolPolicyIn] = Field(default_factory=dict)
    max_steps: int = Field(default=50, ge=1, le=2_000_000_000)
    max_tool_calls: int = Field(default=50, ge=0, le=2_000_000_000)
    max_tokens: int = Field(default=200_000, ge=1, le=2_000_000_000)
    max_wall_seconds: int = Field(default=3600, ge=1, le=2_000_000_000)


class AgentUpdateIn(Schema):
    slug: Slug | None = None
    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = None
    system_prompt: Text | None = None
    model_settings: JsonObject | None = None
    tool_policy: dict[Slug, ToolPolicyIn] | None = None
    max_steps: int | None = Field(default=None, ge=1, le=2_000_000_000)
    max_tool_calls: int | None = Field(default=None, ge=0, le=2_000_000_000)
    max_tokens: int | None = Field(default=None, ge=1, le=2_000_000_000)
    max_wall_seconds: int | None = Field(default=None, ge=1, le=2_000_000_000)


class AgentOut(Schema):
    id: str
    workspace_id: str
    slug: str
    name: str
    description: str
    system_prompt: str
    model_settings: dict[str, Any]
    tool_policy: dict[str, Any]
    max_steps: int
    max_tool_calls: int
    max_tokens: int
    max_wall_seconds: int
    created_at: Timestamp
    updated_at: Timestamp


class AgentListOut(Schema):
    items: list[AgentOut]


def agent_out(agent: Agent) -> AgentOut:
    return AgentOut(
        id=str(agent.id),
        workspace_id=str(agent.workspace_id),
        slug=agent.slug,
        name=agent.name,
        description=agent.description,
        system_prompt=agent.system_prompt,
        model_settings=agent.model_settings,
        tool_policy=agent.tool_policy,
        max_steps=agent.max_steps,
        max_tool_calls=agent.max_tool_calls,
        max_tokens=agent.max_tokens,
        max_wall_seconds=agent.max_wall_seconds,
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def _policy(policy: dict[str, ToolPolicyIn]) -> dict[str, Any]:
    return {name: entry.model_dump(exclude_none=True) for name, entry in policy.items()}


@router.get("/workspaces/{workspace_id}/agents/", response={200: AgentListOut, **READ_ERRORS})
def agent_list_view(request: HttpRequest, workspace_id: WorkspacePath) -> AgentListOut:
    workspace, _ = workspace_for_user(request_user(request), workspace_id)
    return AgentListOut(items=[agent_out(agent) for agent in agent_list(workspace)])


@router.post("/workspaces/{workspace_id}/agents/", response={201: AgentOut, **WRITE_ERRORS})
def agent_create_view(
    request: HttpRequest, body: AgentCreateIn, workspace_id: WorkspacePath
) -> Status[AgentOut]:
    """Create an agent; admins and owners."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id, Role.ADMIN)
    fields = body.model_dump(exclude={"slug", "name", "tool_policy"})
    agent = agent_create(
        workspace=workspace,
        slug=body.slug,
        name=body.name,
        tool_policy=_policy(body.tool_policy),
        **fields,
    )
    return Status(201, agent_out(agent))


@router.get(
    "/workspaces/{workspace_id}/agents/{agent_id}/", response={200: AgentOut, **READ_ERRORS}
)
def agent_detail(
    request: HttpRequest, workspace_id: WorkspacePath, agent_id: AgentPath
) -> AgentOut:
    workspace, _ = workspace_for_user(request_user(request), workspace_id)
    return agent_out(agent_in_workspace(workspace, agent_id))


@router.patch(
    "/workspaces/{workspace_id}/agents/{agent_id}/", response={200: AgentOut, **WRITE_ERRORS}
)
def agent_update_view(
    request: HttpRequest,
    body: AgentUpdateIn,
    workspace_id: WorkspacePath,
    agent_id: AgentPath,
) -> AgentOut:
    """Change some of an agent's fields (those sent); admins and owners."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id, Role.ADMIN)
    agent = agent_in_workspace(workspace, agent_id)
    changes = body.model_dump(exclude_unset=True, exclude={"tool_policy"})
    # Sent as null means "leave it" for every field: none of them may be empty.
    changes = {name: value for name, value in changes.items() if value is not None}
    if body.tool_policy is not None:
        changes["tool_policy"] = _policy(body.tool_policy)
    if changes:
        agent = agent_update(agent=agent, **changes)
    return agent_out(agent)


@router.delete(
    "/workspaces/{workspace_id}/agents/{agent_id}/", response={204: None, **WRITE_ERRORS}
)
def agent_delete_view(
    request: HttpRequest, workspace_id: WorkspacePath, agent_id: AgentPath
) -> Status[None]:
    """Delete an agent that has no runs; admins and owners."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id, Role.ADMIN)
    agent_delete(agent=agent_in_workspace(workspace, agent_id))
    return Status(204, None)
