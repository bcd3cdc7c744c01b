from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from agentmaestro.agents.models import Agent
from agentmaestro.common.errors import Conflict
from agentmaestro.workspaces.models import Workspace

# The fields an agent's owner may set; everything else is managed by the server.
EDITABLE_FIELDS = (
    "slug",
    "name",
    "description",
    "system_prompt",
    "model_settings",
    "tool_policy",
    "max_steps",
    "max_tool_calls",
    "max_tokens",
    "max_wall_seconds",
)


class AgentSlugTaken(Conflict):
    code = "agent_slug_taken"


class AgentInUse(Conflict):
    code = "agent_in_use"


def agent_create(*, workspace: Workspace, slug: str, name: str, **fields: Any) -> Agent:
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"agent_create got unknown fields {sorted(unknown)}")
    try:
        with transaction.atomic():
            return Agent.objects.create(workspace=workspace, slug=slug, name=name, **fields)
    except IntegrityError:
        _raise_if_slug_taken(workspace, slug)
        raise


def agent_update(*, agent: Agent, **changes: Any) -> Agent:
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"agent_update got unknown fields {sorted(unknown)}")
    for name, value in changes.items():
        setattr(agent, name, value)
    try:
        with transaction.atomic():
            agent.save(update_fields=[*changes, "updated_at"])
    except IntegrityError:
        if "slug" in changes:
            _raise_if_slug_taken(agent.workspace, changes["slug"], exclude=agent)
        raise
    return agent


def agent_delete(*, agent: Agent) -> None:
    """Delete an agent that has no runs (runs keep their agent, for the record)."""
    try:
        with transaction.atomic():
            agent.delete()
    except ProtectedError:
        raise AgentInUse(
            "The agent has runs, and runs keep their agent; it cannot be deleted.",
            details={"agent_id": str(agent.id)},
        ) from None


def _raise_if_slug_taken(workspace: Workspace, slug: str, exclude: Agent | None = None) -> None:
    taken = Agent.objects.filter(workspace=workspace, slug=slug)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
        raise AgentSlugTaken(
            f"The workspace already has an agent {slug!r}.", details={"slug": slug}
        ) from None
