from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import OuterRef, Q, Subquery, TextField
from django.db.models.functions import Cast

from agentmaestro.common.errors import NotFound, PermissionDenied
from agentmaestro.common.time import iso_from_db_text
from agentmaestro.runs.events.contracts import registry
from agentmaestro.runs.events.types import StoredEvent
from agentmaestro.runs.models import AgentRun, RunEvent
from agentmaestro.runs.states import RunStatus
from agentmaestro.workspaces.models import Role, WorkspaceMembership


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


def run_event_frames_json(run_id: uuid.UUID, since_seq: int, limit: int) -> list[str]:
    """``run_events_since(...)``'s frames (``StoredEvent.as_frame()``), each already JSON.

    The REST events page's hot path (bench/api.py: a 500-event page). A payload stored at
    its type's newest version needs no upcast, so its JSON text goes from the database to
    the response as it is: no parse, no re-encode; timestamps are read as text for the
    same reason. Older versions are parsed and upcast as ``run_events_since`` does.
    """
    rows = (
        RunEvent.objects.filter(run_id=run_id, seq__gt=since_seq)
        .order_by("seq")
        .annotate(
            payload_text=Cast("payload", TextField()),
            created_at_text=Cast("created_at", TextField()),
        )
        .values_list("seq", "type", "version", "payload_text", "created_at_text")[:limit]
    )
    run_json = json.dumps(str(run_id))
    frames = []
    for seq, type_, version, payload_text, created_at_text in rows:
        if version != registry.get(type_).current_version:
            version, payload = registry.upcast(type_, version, json.loads(payload_text))
            payload_text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        frames.append(
            f'{{"type":"event","run_id":{run_json},"seq":{seq},'
            f'"event_type":{json.dumps(type_)},"version":{version},'
            f'"payload":{payload_text},'
            f'"created_at":{json.dumps(iso_from_db_text(created_at_text))}}}'
        )
    return frames


def run_last_seq(run_id: uuid.UUID) -> int | None:
    return AgentRun.objects.filter(id=run_id).values_list("last_seq", flat=True).first()


def run_for_user(
    user: AbstractBaseUser | AnonymousUser, run_id: uuid.UUID, minimum_role: Role = Role.VIEWER
) -> tuple[AgentRun, Role]:
    """The run if the user may see it, with their role in its workspace.

    A run in a workspace the user is not a member of is reported as not found, so its
    existence does not leak; a member below ``minimum_role`` gets PermissionDenied.
    """
    # One statement: the run and the user's role in its workspace (NULL if none).
    run = (
        AgentRun.objects.filter(id=run_id)
        .annotate(
            user_role=Subquery(
                WorkspaceMembership.objects.filter(
                    workspace_id=OuterRef("workspace_id"), user_id=user.pk
                ).values("role")[:1]
            )
        )
        .first()
        if user.is_authenticated
        else None
    )
    role = Role(run.user_role) if run is not None and run.user_role else None
    if run is None or role is None:
        raise NotFound("No such run.", details={"run_id": str(run_id)})
    if not Role.at_least(role, minimum_role):
        raise PermissionDenied(
            f"This needs the {minimum_role} role; you are {role}.",
            details={"required_role": minimum_role.value, "role": role.value},
        )
    return run, role


@dataclass(frozen=True)
class RunPage:
    runs: list[AgentRun]
    # Where the next page starts (the last run's (created_at, id)), or None at the end.
    next_key: tuple[datetime, uuid.UUID] | None


def run_list(
    *,
    workspace_id: uuid.UUID,
    limit: int,
    status: RunStatus | None = None,
    agent_id: uuid.UUID | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> RunPage:
    """A workspace's runs, newest first, ``limit`` at a time.

    Keyset pagination on ``(created_at, id)`` descending: a page starts strictly after
    the last row of the previous one, so runs created meanwhile neither repeat nor shift
    a page. Served by the ``(workspace, -created_at)`` index.
    """
    runs = AgentRun.objects.filter(workspace_id=workspace_id)
    if status is not None:
        runs = runs.filter(status=status)
    if agent_id is not None:
        runs = runs.filter(agent_id=agent_id)
    if created_after is not None:
        runs = runs.filter(created_at__gt=created_after)
    if created_before is not None:
        runs = runs.filter(created_at__lt=created_before)
    if after is not None:
        at, run_id = after
        runs = runs.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=run_id))
    rows = list(runs.order_by("-created_at", "-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return RunPage(rows, (rows[-1].created_at, rows[-1].id) if more and rows else None)
