"""Fixed personas: an owner, an admin, a member, a viewer, and an outsider elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from agentmaestro.agents.models import Agent
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.services.runs import run_create
from agentmaestro.workspaces.models import Role, Workspace
from agentmaestro.workspaces.services import membership_set, workspace_create

PASSWORD = "correct horse battery staple"


@dataclass
class Personas:
    workspace: Workspace
    other_workspace: Workspace
    agent: Agent
    other_agent: Agent
    owner: Any
    admin: Any
    member: Any
    viewer: Any
    outsider: Any

    def run(self, input: Any = None) -> AgentRun:
        return run_create(agent=self.agent, input=input or {"prompt": "hi"}, created_by=self.member)


def make_user(username: str) -> Any:
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


def make_personas() -> Personas:
    owner = make_user("olive-owner")
    workspace = workspace_create(slug="acme", name="Acme", owner=owner)
    people = {}
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        people[role] = make_user(f"{role.value}-user")
        membership_set(workspace=workspace, user=people[role], role=role)
    outsider = make_user("oscar-outsider")
    other = workspace_create(slug="globex", name="Globex", owner=outsider)
    agent = Agent.objects.create(workspace=workspace, slug="helper", name="Helper")
    other_agent = Agent.objects.create(workspace=other, slug="spy", name="Spy")
    return Personas(
        workspace=workspace,
        other_workspace=other,
        agent=agent,
        other_agent=other_agent,
        owner=owner,
        admin=people[Role.ADMIN],
        member=people[Role.MEMBER],
        viewer=people[Role.VIEWER],
        outsider=outsider,
    )
