from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from agentmaestro.common.errors import NotFound, PermissionDenied
from agentmaestro.runs.events.contracts import registry
from agentmaestro.runs.events.types import StoredEvent
from agentmaestro.runs.models import AgentRun, RunEvent
from agentmaestro.workspaces.models import Role
from agentmaestro.workspaces.selectors import membership_role


def run_events_since(
    run_id: uuid.UUID, since_seq: int = 0, limit: int | None = None
) -> list[StoredEvent]:
    """Events with ``seq > since_seq`` in order, upcast to their newest versions."""
    rows = (
        RunEvent.objects.filter(run_id=run_id, seq__gt=since_seq)
        .order_by("seq")
        .values_list("seq", "type", "version", "payload", "created_at")
    )
    if limit is not None:
        rows = rows[:limit]
    events = []
    for seq, type_, version, payload, created_at in rows:
        version, payload = registry.upcast(type_, version, payload)
        events.append(StoredEvent(run_id, seq, type_, version, payload, created_at))
    return events


def run_last_seq(run_id: uuid.UUID) -> int | None:
    return AgentRun.objects.filter(id=run_id).values_list("last_seq", flat=True).first()


def run_for_user(
    user: AbstractBaseUser | AnonymousUser, run_id: uuid.UUID, minimum_role: Role = Role.VIEWER
) -> tuple[AgentRun, Role]:
    """The run if the user may see it, with their role in its workspace.

    A run in a workspace the user is not a member of is reported as not found, so its
    existence does not leak; a member below ``minimum_role`` gets PermissionDenied.
    """
    run = AgentRun.objects.filter(id=run_id).first()
    role = membership_role(user, run.workspace_id) if run is not None else None
    if run is None or role is None:
        raise NotFound("No such run.", details={"run_id": str(run_id)})
    if not Role.at_least(role, minimum_role):
        raise PermissionDenied(
            f"This needs the {minimum_role} role; you are {role}.",
            details={"required_role": minimum_role.value, "role": role.value},
        )
    return run, role
