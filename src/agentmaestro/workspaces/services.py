from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership


@transaction.atomic
def workspace_create(*, slug: str, name: str, owner: AbstractBaseUser) -> Workspace:
    """Create a workspace; its creator becomes its owner."""
    workspace = Workspace.objects.create(slug=slug, name=name)
    WorkspaceMembership.objects.create(workspace=workspace, user_id=owner.pk, role=Role.OWNER)
    return workspace


def membership_set(
    *, workspace: Workspace, user: AbstractBaseUser, role: Role
) -> WorkspaceMembership:
    membership, _ = WorkspaceMembership.objects.update_or_create(
        workspace=workspace, user_id=user.pk, defaults={"role": role}
    )
    return membership
