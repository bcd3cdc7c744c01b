from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from agentmaestro.common.errors import NotFound, PermissionDenied
from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership


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


def _ref_filter(ref: str, prefix: str = "") -> Q:
    """Match a workspace (or, with ``prefix``, a related one) by UUID or by slug."""
    try:
        key = uuid.UUID(ref)
    except ValueError:
        return Q(**{f"{prefix}slug": ref})
    return Q(**{f"{prefix}id": key}) | Q(**{f"{prefix}slug": ref})


def workspace_for_user(
    user: AbstractBaseUser | AnonymousUser, ref: str, minimum_role: Role = Role.VIEWER
) -> tuple[Workspace, Role]:
    """The workspace named by id or slug, if the user is a member, with their role.

    A workspace the user does not belong to is not found (its existence does not leak); a
    member below ``minimum_role`` gets PermissionDenied. One query.
    """
    membership = (
        WorkspaceMembership.objects.select_related("workspace")
        .filter(_ref_filter(ref, "workspace__"), user_id=user.pk)
        .first()
        if user.is_authenticated
        else None
    )
    if membership is None:
        raise NotFound("No such workspace.", details={"workspace": ref})
    role = Role(membership.role)
    if not Role.at_least(role, minimum_role):
        raise PermissionDenied(
            f"This needs the {minimum_role.value} role; you are {role.value}.",
            details={"required_role": minimum_role.value, "role": role.value},
        )
    return membership.workspace, role


def workspace_memberships_of(user: AbstractBaseUser) -> QuerySet[WorkspaceMembership]:
    """The user's memberships with their workspaces, by workspace slug."""
    return (
        WorkspaceMembership.objects.select_related("workspace")
        .filter(user_id=user.pk)
        .order_by("workspace__slug")
    )


def workspace_members(workspace: Workspace) -> QuerySet[WorkspaceMembership]:
    return (
        WorkspaceMembership.objects.select_related("user")
        .filter(workspace=workspace)
        .order_by("user__username")
    )
