"""Runs over REST: start (idempotently), list, snapshot, events, cancel.

* ``POST /api/v1/workspaces/{workspace_id}/runs/`` (members and above) creates a run and
  enqueues its first tick after commit. With an ``Idempotency-Key`` header, a retry with
  the same key in the same workspace answers **200** with the run the first request
  created (**201**); the same key with a different agent or input is a 422
  ``idempotency_key_reused``.
* Reads need any role; a run in a workspace you are not in is a 404.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status
from ninja.params import functions as param
from pydantic import Field, StringConstraints

from agentmaestro.agents.selectors import agent_in_workspace
from agentmaestro.common.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    InvalidInput,
    JsonValue,
    Ref,
    SeqNumber,
    Text,
    WorkspacePath,
    prevalidated_json,
    request_user,
)
from agentmaestro.common.errors import NotFound
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.selectors import run_event_frames_json, run_for_user, run_list
from agentmaestro.runs.services.runs import run_cancel, run_start
from agentmaestro.runs.services.snapshot import run_fields, run_snapshot
from agentmaestro.runs.states import RunStatus
from agentmaestro.workspaces.models import Role
from agentmaestro.workspaces.selectors import workspace_for_user

router = Router(tags=["runs"])

EVENTS_DEFAULT_LIMIT = 100
EVENTS_MAX_LIMIT = 1000
RUNS_DEFAULT_LIMIT = 50
RUNS_MAX_LIMIT = 200

IdempotencyKeyHeader = Annotated[
    str | None,
    StringConstraints(pattern=r"^[\x21-\x7e]{1,100}$"),
    param.Header(None, alias="Idempotency-Key", description="1-100 printable ASCII characters."),
]


class RunCreateIn(Schema):
    agent: Ref = Field(description="The agent's id or slug, in this workspace.")
    input: JsonValue = Field(
        default_factory=dict, description='Any JSON; agents read {"prompt": "…"}.'
    )


class UsageOut(Schema):
    input_tokens: int
    output_tokens: int


class RunOut(Schema):
    id: str
    workspace_id: str
    agent_id: str
    status: RunStatus
    input: Any
    output: Any
    error: dict[str, Any] | None
    parent_run_id: str | None
    parent_tool_call_id: str | None
    created_by_id: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    step_count: int
    tool_call_count: int
    usage: UsageOut
    last_seq: int = Field(description="The seq of the run's latest event.")


class RunListOut(Schema):
    items: list[RunOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class RunListQuery(Schema):
    status: RunStatus | None = None
    agent: Ref | None = Field(default=None, description="An agent's id or slug.")
    created_after: datetime | None = None
    created_before: datetime | None = None
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=RUNS_DEFAULT_LIMIT, ge=1, le=RUNS_MAX_LIMIT)


class StepOut(Schema):
    index: int
    kind: str
    status: str
    payload: dict[str, Any]
    created_at: str
    finished_at: str | None


class ToolCallOut(Schema):
    id: str
    step_index: int | None
    tool_name: str
    provider_call_id: str
    arguments: Any
    status: str
    attempt: int
    result: Any
    error: Any
    idempotency_key: str
    created_at: str
    started_at: str | None
    finished_at: str | None


class RunSnapshotOut(Schema):
    status: RunStatus
    last_seq: int = Field(description="The state below is exactly the state after this seq.")
    run: RunOut
    steps: list[StepOut]
    tool_calls: list[ToolCallOut]


class EventOut(Schema):
    type: str = Field(description='Always "event" (the WebSocket frame shape).')
    run_id: str
    seq: int
    event_type: str
    version: int
    payload: dict[str, Any]
    created_at: str


class EventListOut(Schema):
    items: list[EventOut]
    last_seq: int = Field(description="The run's latest seq when the page was read.")


class EventsQuery(Schema):
    since_seq: SeqNumber = 0
    limit: int = Field(default=EVENTS_DEFAULT_LIMIT, ge=1, le=EVENTS_MAX_LIMIT)


class RunCancelIn(Schema):
    reason: Text = Field(default="", max_length=2000)


def run_out(run: AgentRun) -> dict[str, Any]:
    return {**run_fields(run), "last_seq": run.last_seq}


def encode_cursor(key: tuple[datetime, uuid.UUID]) -> str:
    raw = json.dumps([key[0].isoformat(), str(key[1])]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, run_id = json.loads(raw)
        key = (datetime.fromisoformat(at), uuid.UUID(run_id))
    except (binascii.Error, ValueError, TypeError):
        raise InvalidInput(
            "The cursor is not one this API gave out.", details={"field": "cursor"}
        ) from None
    if key[0].tzinfo is None:
        raise InvalidInput("The cursor is not one this API gave out.", details={"field": "cursor"})
    return key


def _aware(value: datetime | None) -> datetime | None:
    """A timestamp without a zone is read as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@router.post(
    "/workspaces/{workspace_id}/runs/",
    response={201: RunOut, 200: RunOut, **WRITE_ERRORS},
)
def run_create_view(
    request: HttpRequest,
    response: HttpResponse,
    body: RunCreateIn,
    workspace_id: WorkspacePath,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Status[dict[str, Any]]:
    """Start a run of an agent; members and above.

    Answers 201 with the new run, or 200 with the run an earlier request with the same
    ``Idempotency-Key`` created (as it is now).
    """
    user = request_user(request)
    workspace, _ = workspace_for_user(user, workspace_id, Role.MEMBER)
    agent = agent_in_workspace(workspace, body.agent)
    run, created = run_start(
        agent=agent, input=body.input, created_by=user, idempotency_key=idempotency_key
    )
    if not created:
        response["Idempotent-Replayed"] = "true"
    return Status(201 if created else 200, run_out(run))


@router.get("/workspaces/{workspace_id}/runs/", response={200: RunListOut, **READ_ERRORS})
def run_list_view(
    request: HttpRequest,
    filters: Query[RunListQuery],
    workspace_id: WorkspacePath,
) -> RunListOut | dict[str, Any]:
    """The workspace's runs, newest first, a page at a time (follow ``next_cursor``)."""
    workspace, _ = workspace_for_user(request_user(request), workspace_id)
    agent_id = None
    if filters.agent is not None:
        try:
            agent_id = agent_in_workspace(workspace, filters.agent).id
        except NotFound:
            return {"items": [], "next_cursor": None}
    page = run_list(
        workspace_id=workspace.id,
        limit=filters.limit,
        status=filters.status,
        agent_id=agent_id,
        created_after=_aware(filters.created_after),
        created_before=_aware(filters.created_before),
        after=decode_cursor(filters.cursor) if filters.cursor else None,
    )
    return {
        "items": [run_out(run) for run in page.runs],
        "next_cursor": encode_cursor(page.next_key) if page.next_key else None,
    }


@router.get("/runs/{run_id}/", response={200: RunSnapshotOut, **READ_ERRORS})
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """The run's snapshot: its state, steps and tool calls, exactly as of ``last_seq``.

    Follow it live with ``/ws/runs/{run_id}/?since_seq=<last_seq>``, or page on with
    ``events/?since_seq=<last_seq>``.
    """
    run, _ = run_for_user(request_user(request), run_id)
    snapshot = run_snapshot(run.id)
    fields = snapshot["run"]
    return prevalidated_json(
        {
            "status": fields["status"],
            "last_seq": snapshot["last_seq"],
            "run": {**fields, "last_seq": snapshot["last_seq"]},
            "steps": snapshot["steps"],
            "tool_calls": snapshot["tool_calls"],
        }
    )


@router.get("/runs/{run_id}/events/", response={200: EventListOut, **READ_ERRORS})
def run_events(request: HttpRequest, run_id: uuid.UUID, page: Query[EventsQuery]) -> HttpResponse:
    """Events with ``seq > since_seq`` in order, at most ``limit`` (default 100, max 1000),
    each upcast to its newest contract version. ``last_seq`` says whether more exist."""
    run, _ = run_for_user(request_user(request), run_id)
    frames = run_event_frames_json(run.id, page.since_seq, page.limit)
    # The run row was read before the events: events appended since may be on the page.
    last_seq = max(run.last_seq, page.since_seq + len(frames) if frames else 0)
    body = '{"items":[' + ",".join(frames) + '],"last_seq":' + str(last_seq) + "}"
    return HttpResponse(body, content_type="application/json; charset=utf-8")


@router.post("/runs/{run_id}/cancel/", response={200: RunOut, **WRITE_ERRORS})
def run_cancel_view(
    request: HttpRequest, run_id: uuid.UUID, body: RunCancelIn | None = None
) -> dict[str, Any]:
    """Cancel a run that has not finished; members and above. A finished run: 409
    ``run_already_finished``."""
    user = request_user(request)
    run, _ = run_for_user(user, run_id, minimum_role=Role.MEMBER)
    run = run_cancel(run_id=run.id, by=user, reason=body.reason if body else "")
    return run_out(run)
