from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from agentmaestro.agents.models import Agent
from agentmaestro.common.errors import NotFound
from agentmaestro.workspaces.models import Workspace


def agent_in_workspace(workspace: Workspace, ref: str) -> Agent:
    """The workspace's agent named by id or slug; NotFound otherwise."""
    try:
        match = Q(id=uuid.UUID(ref)) | Q(slug=ref)
    except ValueError:
        match = Q(slug=ref)
    agent = Agent.objects.filter(match, workspace=workspace).first()
    if agent is None:
        raise NotFound("No such agent.", details={"agent": ref})
    return agent


def agent_list(workspace: Workspace) -> QuerySet[Agent]:
    return Agent.objects.filter(workspace=workspace).order_by("slug")
