from __future__ import annotations

from agentmaestro.tools.builtins import BUILTIN_TOOLS
from agentmaestro.tools.models import ExecutorKind, RiskLevel, ToolDefinition
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
