from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from agentmaestro.agents.models import Agent
from agentmaestro.common.errors import AppError, Conflict
from agentmaestro.tools.builtins import BUILTIN_TOOLS
from agentmaestro.tools.models import (
    ExecutorKind,
    RiskLevel,
    ToolDefinition,
    validate_json_schema,
)
from agentmaestro.workspaces.models import Workspace


def builtin_tools_install(*, workspace: Workspace) -> list[ToolDefinition]:
    """Define every built-in tool in the workspace (idempotent)."""
    tools = []
    for builtin in BUILTIN_TOOLS.values():
        tool, _ = ToolDefinition.objects.update_or_create(
            workspace=workspace,
            name=builtin.name,
            defaults={
                "description": builtin.description,
                "args_schema": builtin.schema,
                "risk_level": RiskLevel.SAFE,
                "executor": ExecutorKind.BUILTIN,
                "timeout_seconds": 10,
            },
        )
        tools.append(tool)
    return tools


class ToolNameTaken(Conflict):
    code = "tool_name_taken"


def tool_define(
    *,
    workspace: Workspace,
    name: str,
    executor: ExecutorKind,
    description: str = "",
    args_schema: dict[str, Any] | None = None,
    risk_level: RiskLevel = RiskLevel.SAFE,
    target_agent: Agent | None = None,
    timeout_seconds: int = 30,
) -> ToolDefinition:
    """Define a new tool in the workspace (its name is not yet taken there)."""
    schema = args_schema if args_schema is not None else {"type": "object"}
    try:
        validate_json_schema(schema)
    except DjangoValidationError as exc:
        raise InvalidToolDefinition(exc.messages[0], details={"field": "args_schema"}) from None
    if (executor == ExecutorKind.SUBAGENT) != (target_agent is not None):
        raise InvalidToolDefinition(
            "A subagent tool names its target agent, and only a subagent tool does.",
            details={"field": "target_agent"},
        )
    if target_agent is not None and target_agent.workspace_id != workspace.id:
        raise InvalidToolDefinition(
            "The target agent is in another workspace.", details={"field": "target_agent"}
        )
    try:
        with transaction.atomic():
            return ToolDefinition.objects.create(
                workspace=workspace,
                name=name,
                description=description,
                args_schema=schema,
                risk_level=risk_level,
                executor=executor,
                target_agent=target_agent,
                timeout_seconds=timeout_seconds,
            )
    except IntegrityError:
        if ToolDefinition.objects.filter(workspace=workspace, name=name).exists():
            raise ToolNameTaken(
                f"The workspace already has a tool {name!r}.", details={"name": name}
            ) from None
        raise


class InvalidToolDefinition(AppError):
    code = "invalid_tool_definition"
    http_status = 422
