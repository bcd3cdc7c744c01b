"""``/api/v1/workspaces/``: my workspaces, and their members (owners manage members)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from agentmaestro.common.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    IntIdPath,
    Slug,
    Text,
    Timestamp,
    WorkspacePath,
    request_user,
)
from agentmaestro.common.errors import NotFound
from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership
from agentmaestro.workspaces.selectors import (
    workspace_for_user,
    workspace_members,
    workspace_memberships_of,
)
from agentmaestro.workspaces.services import (
    membership_add,
    membership_change_role,
    membership_remove,
    workspace_create,
)

router = Router(tags=["workspaces"])


class WorkspaceCreateIn(Schema):
    slug: Slug
    name: Text = Field(min_length=1, max_length=200)


class WorkspaceOut(Schema):
    id: str
    slug: str
    name: str
    created_at: Timestamp
    role: Role = Field(description="Your role in it.")


class WorkspaceListOut(Schema):
    items: list[WorkspaceOut]


class MemberAddIn(Schema):
    username: Text = Field(min_length=1, max_length=150)
    role: Role


class MemberUpdateIn(Schema):
    role: Role


class MemberOut(Schema):
    user_id: int
    username: str
    role: Role
    created_at: Timestamp


class MemberListOut(Schema):
    items: list[MemberOut]


def workspace_out(workspace: Workspace, role: Role) -> WorkspaceOut:
    return WorkspaceOut(
        id=str(workspace.id),
        slug=workspace.slug,
        name=workspace.name,
        created_at=workspace.created_at,
        role=role,
    )


def member_out(membership: WorkspaceMembership) -> MemberOut:
    return MemberOut(
        user_id=membership.user_id,
        username=membership.user.get_username(),
        role=Role(membership.role),
        created_at=membership.created_at,
    )


@router.get("/workspaces/", response={200: WorkspaceListOut, **READ_ERRORS})
def workspace_list(request: HttpRequest) -> WorkspaceListOut:
    """The workspaces you are a member of, with your role in each."""
    memberships = workspace_memberships_of(request_user(request))
    return WorkspaceListOut(items=[workspace_out(m.workspace, Role(m.role)) for m in memberships])


@router.post("/workspaces/", response={201: WorkspaceOut, **WRITE_ERRORS})
def workspace_create_view(request: HttpRequest, body: WorkspaceCreateIn) -> Status[WorkspaceOut]:
    """Create a workspace; you become its owner."""
    workspace = workspace_create(slug=body.slug, name=body.name, owner=request_user(request))
    return Status(201, workspace_out(workspace, Role.OWNER))


@router.get("/workspaces/{workspace_id}/", response={200: WorkspaceOut, **READ_ERRORS})
def workspace_detail(request: HttpRequest, workspace_id: WorkspacePath) -> WorkspaceOut:
    workspace, role = workspace_for_user(request_user(request), workspace_id)
    return workspace_out(workspace, role)


@router.get("/workspaces/{workspace_id}/members/", response={200: MemberListOut, **READ_ERRORS})
def member_list(request: HttpRequest, workspace_id: WorkspacePath) -> MemberListOut:
    """The workspace's members; any member may read them."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id)
    return MemberListOut(items=[member_out(m) for m in workspace_members(workspace)])


@router.post("/workspaces/{workspace_id}/members/", response={201: MemberOut, **WRITE_ERRORS})
def member_add(
    request: HttpRequest, body: MemberAddIn, workspace_id: WorkspacePath
) -> Status[MemberOut]:
    """Add a user by username; owners only."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id, Role.OWNER)
    user = get_user_model().objects.filter(username=body.username, is_active=True).first()
    if user is None:
        raise NotFound("No such user.", details={"username": body.username})
    membership = membership_add(workspace=workspace, user=user, role=body.role)
    return Status(201, member_out(membership))


@router.patch(
    "/workspaces/{workspace_id}/members/{user_id}/", response={200: MemberOut, **WRITE_ERRORS}
)
def member_update(
    request: HttpRequest,
    body: MemberUpdateIn,
    workspace_id: WorkspacePath,
    user_id: IntIdPath,
) -> MemberOut:
    """Change a member's role; owners only. The last owner cannot step down."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id, Role.OWNER)
    membership = membership_change_role(workspace=workspace, user_id=user_id, role=body.role)
    return member_out(membership)


@router.delete(
    "/workspaces/{workspace_id}/members/{user_id}/", response={204: None, **WRITE_ERRORS}
)
def member_remove(
    request: HttpRequest, workspace_id: WorkspacePath, user_id: IntIdPath
) -> Status[None]:
    """Remove a member; owners only. The last owner cannot be removed."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id, Role.OWNER)
    membership_remove(workspace=workspace, user_id=user_id)
    return Status(204, None)
