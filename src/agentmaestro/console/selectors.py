"""Reads the console's pages need that no other app does (lists, counts, a tool policy view).

Every function takes a workspace the caller has already checked the user's membership of;
``workspace_for_user`` is that check.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Max, QuerySet

from agentmaestro.agents.models import Agent
from agentmaestro.common.errors import NotFound
from agentmaestro.runs.models import AgentRun
from agentmaestro.tools.models import ToolDefinition
from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership

RUN_LIST_LIMIT = 50


def workspaces_for_user(user: AbstractBaseUser | AnonymousUser) -> list[tuple[Workspace, Role]]:
    """The user's workspaces with their role in each, by slug."""
    if not user.is_authenticated:
        return []
    memberships = (
        WorkspaceMembership.objects.filter(user_id=user.pk)
        .select_related("workspace")
        .order_by("workspace__slug")
    )
    return [(m.workspace, Role(m.role)) for m in memberships]


def workspace_for_user(user: AbstractBaseUser | AnonymousUser, slug: str) -> tuple[Workspace, Role]:
    """The workspace and the user's role in it; NotFound when it is missing or not theirs.

    Both answers are the same, so a workspace's existence does not leak to outsiders.
    """
    if user.is_authenticated:
        membership = (
            WorkspaceMembership.objects.filter(user_id=user.pk, workspace__slug=slug)
            .select_related("workspace")
            .first()
        )
        if membership is not None:
            return membership.workspace, Role(membership.role)
    raise NotFound("No such workspace.", details={"workspace": slug})


def run_list(
    workspace: Workspace,
    *,
    statuses: list[str] | None = None,
    agent_id: uuid.UUID | None = None,
    limit: int = RUN_LIST_LIMIT,
) -> list[AgentRun]:
    """The workspace's newest runs, optionally only those in ``statuses`` and/or of one agent."""
    runs: QuerySet[AgentRun] = AgentRun.objects.filter(workspace=workspace).select_related(
        "agent", "workspace"
    )
    if statuses:
        runs = runs.filter(status__in=statuses)
    if agent_id is not None:
        runs = runs.filter(agent_id=agent_id)
    return list(runs.order_by("-created_at", "-id")[:limit])


def run_status_counts(workspace: Workspace) -> dict[str, int]:
    rows = (
        AgentRun.objects.filter(workspace=workspace).values_list("status").annotate(n=Count("id"))
    )
    return {status: n for status, n in rows}


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    run_count: int
    last_run_at: Any
    provider: str
    model: str
    tool_count: int


def _provider_and_model(agent: Agent) -> tuple[str, str]:
    settings = agent.model_settings if isinstance(agent.model_settings, dict) else {}
    return str(settings.get("provider", "—")), str(settings.get("model", ""))


def agent_rows(workspace: Workspace) -> list[AgentRow]:
    agents = Agent.objects.filter(workspace=workspace).annotate(
        run_count=Count("runs"), last_run_at=Max("runs__created_at")
    )
    rows = []
    for agent in agents.order_by("slug"):
        provider, model = _provider_and_model(agent)
        policy = agent.tool_policy if isinstance(agent.tool_policy, dict) else {}
        rows.append(
            AgentRow(
                agent=agent,
                run_count=agent.run_count,  # the annotation
                last_run_at=agent.last_run_at,
                provider=provider,
                model=model,
                tool_count=len(policy),
            )
        )
    return rows


def agent_in_workspace(workspace: Workspace, slug: str) -> Agent:
    agent = Agent.objects.filter(workspace=workspace, slug=slug).first()
    if agent is None:
        raise NotFound("No such agent.", details={"agent": slug})
    return agent


@dataclass(frozen=True)
class PolicyRow:
    tool: str
    mode: str
    approver_role: str
    risk_level: str
    executor: str
    description: str
    defined: bool


def agent_tool_policy(agent: Agent) -> list[PolicyRow]:
    """The agent's tool policy beside the workspace's definitions of those tools.

    A tool named in the policy but not defined in the workspace is listed too (calls to it
    fail as unknown_tool), so the page shows the policy as the engine will apply it.
    """
    policy = agent.tool_policy if isinstance(agent.tool_policy, dict) else {}
    tools = {
        tool.name: tool
        for tool in ToolDefinition.objects.filter(workspace_id=agent.workspace_id, name__in=policy)
    }
    rows = []
    for name in sorted(policy):
        rule = policy[name] if isinstance(policy[name], dict) else {}
        tool = tools.get(name)
        mode = str(rule.get("mode", "allow"))
        rows.append(
            PolicyRow(
                tool=name,
                mode=mode,
                approver_role=str(rule.get("approver_role", "")) if mode == "approve" else "",
                risk_level=tool.risk_level if tool else "",
                executor=tool.executor if tool else "",
                description=tool.description if tool else "",
                defined=tool is not None,
            )
        )
    return rows


def model_settings_summary(agent: Agent) -> list[tuple[str, str]]:
    """The agent's model settings as (key, value) lines, without secrets or long scripts."""
    settings = agent.model_settings if isinstance(agent.model_settings, dict) else {}
    lines = []
    for key in sorted(settings):
        value = settings[key]
        if any(word in key.lower() for word in ("key", "secret", "token", "password")):
            text = "•••"
        elif key == "script" and isinstance(value, list):
            text = f"{len(value)} scripted turn{'s' if len(value) != 1 else ''}"
        else:
            text = str(value)
            text = text if len(text) <= 120 else text[:119] + "…"
        lines.append((key, text))
    return lines
