from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from agentmaestro.workspaces.models import Role, WorkspaceMembership


def membership_role(
    user: AbstractBaseUser | AnonymousUser, workspace_id: uuid.UUID | str
) -> Role | None:
    """The user's role in the workspace, or None if they are not a member."""
    if not user.is_authenticated:
        return None
    role = (
        WorkspaceMembership.objects.filter(user_id=user.pk, workspace_id=workspace_id)
        .values_list("role", flat=True)
        .first()
    )
    return Role(role) if role else None
