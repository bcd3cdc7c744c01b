from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from agentmaestro.common.errors import Conflict, NotFound
from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership


class WorkspaceSlugTaken(Conflict):
    code = "workspace_slug_taken"


class AlreadyMember(Conflict):
    code = "already_member"


class LastOwner(Conflict):
    code = "last_owner"


def workspace_create(*, slug: str, name: str, owner: AbstractBaseUser) -> Workspace:
    """Create a workspace; its creator becomes its owner."""
    try:
        with transaction.atomic():
            workspace = Workspace.objects.create(slug=slug, name=name)
            WorkspaceMembership.objects.create(
                workspace=workspace, user_id=owner.pk, role=Role.OWNER
            )
    except IntegrityError:
        if Workspace.objects.filter(slug=slug).exists():
            raise WorkspaceSlugTaken(
                f"The workspace slug {slug!r} is taken.", details={"slug": slug}
            ) from None
        raise
    return workspace


def membership_set(
    *, workspace: Workspace, user: AbstractBaseUser, role: Role
) -> WorkspaceMembership:
    membership, _ = WorkspaceMembership.objects.update_or_create(
        workspace=workspace, user_id=user.pk, defaults={"role": role}
    )
    return membership


def membership_add(
    *, workspace: Workspace, user: AbstractBaseUser, role: Role
) -> WorkspaceMembership:
    """Add a user who is not yet a member."""
    try:
        with transaction.atomic():
            return WorkspaceMembership.objects.create(
                workspace=workspace, user_id=user.pk, role=role
            )
    except IntegrityError:
        raise AlreadyMember(
            "That user is already a member; change their role instead.",
            details={"user_id": user.pk},
        ) from None


def membership_change_role(
    *, workspace: Workspace, user_id: int, role: Role
) -> WorkspaceMembership:
    """Change a member's role; the workspace always keeps at least one owner."""
    with transaction.atomic():
        membership = _lock_membership(workspace, user_id)
        if membership.role == Role.OWNER and role != Role.OWNER:
            _keep_an_owner(workspace, membership)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def membership_remove(*, workspace: Workspace, user_id: int) -> None:
    """Remove a member; the workspace always keeps at least one owner."""
    with transaction.atomic():
        membership = _lock_membership(workspace, user_id)
        if membership.role == Role.OWNER:
            _keep_an_owner(workspace, membership)
        membership.delete()


def _lock_membership(workspace: Workspace, user_id: int) -> WorkspaceMembership:
    membership = (
        WorkspaceMembership.objects.select_for_update()
        .select_related("user")
        .filter(workspace=workspace, user_id=user_id)
        .first()
    )
    if membership is None:
        raise NotFound("No such member.", details={"user_id": user_id})
    return membership


def _keep_an_owner(workspace: Workspace, leaving: WorkspaceMembership) -> None:
    # Lock every owner row, so two owners demoting each other at once cannot both pass.
    owners = list(
        WorkspaceMembership.objects.select_for_update()
        .filter(workspace=workspace, role=Role.OWNER)
        .values_list("pk", flat=True)
    )
    if owners == [leaving.pk]:
        raise LastOwner(
            "A workspace keeps at least one owner.", details={"user_id": leaving.user_id}
        )
