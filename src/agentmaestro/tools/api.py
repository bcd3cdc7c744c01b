"""``/api/v1/workspaces/{workspace_id}/tools/``: the workspace's tool definitions; every
member reads them, admins and owners define new ones."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from agentmaestro.agents.selectors import agent_in_workspace
from agentmaestro.common.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    JsonObject,
    Ref,
    Text,
    Timestamp,
    WorkspacePath,
    request_user,
)
from agentmaestro.tools.models import ExecutorKind, RiskLevel, ToolDefinition
from agentmaestro.tools.services import tool_define
from agentmaestro.workspaces.models import Role
from agentmaestro.workspaces.selectors import workspace_for_user

router = Router(tags=["tools"])


class ToolCreateIn(Schema):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: Text = ""
    args_schema: JsonObject = Field(
        default_factory=lambda: {"type": "object"},
        description="A JSON Schema for the tool's arguments.",
    )
    risk_level: RiskLevel = RiskLevel.SAFE
    executor: ExecutorKind
    target_agent: Ref | None = Field(
        default=None, description="For executor=subagent: the agent's id or slug."
    )
    timeout_seconds: int = Field(default=30, ge=1, le=86_400)


class ToolOut(Schema):
    id: str
    workspace_id: str
    name: str
    description: str
    args_schema: dict[str, Any]
    risk_level: RiskLevel
    executor: ExecutorKind
    target_agent_id: str | None
    timeout_seconds: int
    created_at: Timestamp


class ToolListOut(Schema):
    items: list[ToolOut]


def tool_out(tool: ToolDefinition) -> ToolOut:
    return ToolOut(
        id=str(tool.id),
        workspace_id=str(tool.workspace_id),
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        risk_level=RiskLevel(tool.risk_level),
        executor=ExecutorKind(tool.executor),
        target_agent_id=str(tool.target_agent_id) if tool.target_agent_id else None,
        timeout_seconds=tool.timeout_seconds,
        created_at=tool.created_at,
    )


@router.get("/workspaces/{workspace_id}/tools/", response={200: ToolListOut, **READ_ERRORS})
def tool_list(request: HttpRequest, workspace_id: WorkspacePath) -> ToolListOut:
    workspace, _ = workspace_for_user(request_user(request), workspace_id)
    tools = ToolDefinition.objects.filter(workspace=workspace).order_by("name")
    return ToolListOut(items=[tool_out(tool) for tool in tools])


@router.post("/workspaces/{workspace_id}/tools/", response={201: ToolOut, **WRITE_ERRORS})
def tool_create(
    request: HttpRequest, body: ToolCreateIn, workspace_id: WorkspacePath
) -> Status[ToolOut]:
    """Define a new tool; admins and owners."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id, Role.ADMIN)
    target = (
        agent_in_workspace(workspace, body.target_agent) if body.target_agent is not None else None
    )
    tool = tool_define(
        workspace=workspace,
        name=body.name,
        description=body.description,
        args_schema=body.args_schema,
        risk_level=body.risk_level,
        executor=body.executor,
        target_agent=target,
        timeout_seconds=body.timeout_seconds,
    )
    return Status(201, tool_out(tool))
