from __future__ import annotations

import json
import uuid
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from agentmaestro.agents.models import Agent
from agentmaestro.common.errors import AppError, NotFound, PermissionDenied, ValidationFailed
from agentmaestro.common.time import iso
from agentmaestro.console.views.common import display_time, json_summary, nav_context
from agentmaestro.console.views.workspaces import PROMPT_MAX_CHARS
from agentmaestro.runs import dispatch
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.selectors import run_events_since, run_for_user
from agentmaestro.runs.services.runs import run_add_note, run_create
from agentmaestro.runs.services.snapshot import run_snapshot
from agentmaestro.runs.states import RunStatus
from agentmaestro.workspaces.models import Role
from agentmaestro.workspaces.selectors import membership_role

# The stream page renders at most this many of the latest stored events (and says how many
# earlier ones it leaves out), so a long run's page stays light.
TIMELINE_EVENTS = 500
NOTE_MAX_CHARS = 2000


@login_required
@require_POST
def run_start(request: HttpRequest) -> HttpResponse:
    """Start a run of an agent with a prompt; members and above of the agent's workspace.

    The run is created PENDING and its first tick is enqueued once that commit is done;
    the browser goes to the new run's page to watch it.
    """
    try:
        agent = _agent_for_member(request, request.POST.get("agent", ""))
        prompt = request.POST.get("prompt", "").strip()
        if not prompt or len(prompt) > PROMPT_MAX_CHARS:
            raise ValidationFailed(
                f"A prompt is between 1 and {PROMPT_MAX_CHARS} characters.",
                details={"field": "prompt", "max_length": PROMPT_MAX_CHARS},
            )
        with transaction.atomic():
            # login_required: the user is a real one.
            user = cast(AbstractBaseUser, request.user)
            run = run_create(agent=agent, input={"prompt": prompt}, created_by=user)
            transaction.on_commit(lambda: dispatch.enqueue_tick(run.id))
    except NotFound:
        raise Http404("No such agent.") from None
    except AppError as error:
        return HttpResponse(error.message, status=error.http_status, content_type="text/plain")
    return redirect(reverse("console:run-detail", args=[run.id]))


def _agent_for_member(request: HttpRequest, agent_id: str) -> Agent:
    """The agent, if the user is a member (or above) of its workspace.

    Like runs, an agent in a workspace the user cannot see is not found.
    """
    try:
        key = uuid.UUID(agent_id)
    except ValueError:
        raise NotFound("No such agent.") from None
    agent = Agent.objects.filter(id=key).first()
    role = membership_role(request.user, agent.workspace_id) if agent is not None else None
    if agent is None or role is None:
        raise NotFound("No such agent.")
    if not Role.at_least(role, Role.MEMBER):
        raise PermissionDenied(f"Starting runs needs the member role; you are {role}.")
    return agent


@login_required
def run_stream(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """The stream test page: the run's snapshot, then its events live over the WebSocket.

    The page subscribes with ``since_seq`` = the snapshot's ``last_seq``, and the events it
    shows up to there are read with ``seq <= last_seq``: every one of them is committed
    (the counter moves in the same transaction as the rows), so snapshot, timeline and
    stream meet exactly, with no gap and no duplicate.
    """
    try:
        run, role = run_for_user(request.user, run_id)
    except NotFound:
        raise Http404("No such run.") from None
    snapshot = run_snapshot(run.id)
    last_seq: int = snapshot["last_seq"]
    since = max(0, last_seq - TIMELINE_EVENTS)
    events = [e.as_frame() for e in run_events_since(run.id, since, limit=last_seq - since)]
    can_write = Role.at_least(role, Role.MEMBER)
    run_fields = snapshot["run"]
    outcome = run_fields["error"] if run_fields["error"] is not None else run_fields["output"]
    stream: dict[str, Any] = {
        "run_id": str(run.id),
        "status": run_fields["status"],
        "last_seq": last_seq,
        "events": events,
        "omitted": since,
        "heartbeat_seconds": settings.AGENTMAESTRO_WS_HEARTBEAT_SECONDS,
        "can_write": can_write,
        "terminal_statuses": sorted(s.value for s in RunStatus if s.is_terminal),
    }
    return render(
        request,
        "console/run_stream.html",
        {
            **nav_context(request, run.workspace, role),
            "run": run,
            "snapshot": snapshot,
            "stream": stream,
            "is_terminal": RunStatus(run_fields["status"]).is_terminal,
            "note_max_chars": NOTE_MAX_CHARS,
            "prompt_max_chars": PROMPT_MAX_CHARS,
            "rerun_prompt": _prompt_of(run_fields["input"]),
            "created_at": display_time(run_fields["created_at"]),
            "started_at": display_time(run_fields["started_at"]),
            "finished_at": display_time(run_fields["finished_at"]),
            "input_json": json.dumps(run_fields["input"], indent=2, ensure_ascii=False),
            "outcome_json": (
                "" if outcome is None else json.dumps(outcome, indent=2, ensure_ascii=False)
            ),
            "steps": [
                {**step, "summary": json_summary(step["payload"])} for step in snapshot["steps"]
            ],
            "tool_calls": [_tool_call_row(call) for call in snapshot["tool_calls"]],
        },
    )


@login_required
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """A run at a glance: its timeline and waterfall, built from the snapshot and then live.

    The snapshot (read under the run's share lock) and the events up to its ``last_seq``
    are embedded in the page; the page's script renders them and subscribes with
    ``since_seq = last_seq``, so the live stream starts exactly where the page left off.
    Step ids (never in events) are embedded, so streamed ``token.delta`` frames, which
    name a step by id, find their turn; and tool calls' positions, to list a turn's calls
    in the order the model made them.
    """
    try:
        run, role = run_for_user(request.user, run_id)
    except NotFound:
        raise Http404("No such run.") from None
    run = AgentRun.objects.select_related("agent", "workspace").get(id=run.id)
    snapshot = run_snapshot(run.id)
    last_seq: int = snapshot["last_seq"]
    since = max(0, last_seq - TIMELINE_EVENTS)
    events = [e.as_frame() for e in run_events_since(run.id, since, limit=last_seq - since)]
    step_ids = dict(AgentStep.objects.filter(run_id=run.id).values_list("id", "index"))
    # The snapshot orders a step's tool calls by creation time, then id; calls made by one
    # model turn share a creation time, so the page orders them by position, as the model
    # asked for them (the order their tool_call.created events come in).
    positions = dict(ToolCall.objects.filter(run_id=run.id).values_list("id", "position"))
    run_fields = snapshot["run"]
    initial: dict[str, Any] = {
        "run_id": str(run.id),
        "snapshot": snapshot,
        "events": events,
        "omitted": since,
        "step_ids": {str(key): index for key, index in step_ids.items()},
        "call_positions": {str(key): position for key, position in positions.items()},
        "heartbeat_seconds": settings.AGENTMAESTRO_WS_HEARTBEAT_SECONDS,
        "terminal_statuses": sorted(s.value for s in RunStatus if s.is_terminal),
        "server_now": iso(timezone.now()),
    }
    return render(
        request,
        "console/run_detail.html",
        {
            **nav_context(request, run.workspace, role),
            "run": run,
            "status": run_fields["status"],
            "is_terminal": RunStatus(run_fields["status"]).is_terminal,
            "prompt": _prompt_of(run_fields["input"]),
            "input_json": json.dumps(run_fields["input"], indent=2, ensure_ascii=False),
            "created_at": display_time(run_fields["created_at"]),
            "initial": initial,
            "prompt_max_chars": PROMPT_MAX_CHARS,
            "note_max_chars": NOTE_MAX_CHARS,
        },
    )


def _prompt_of(run_input: Any) -> str:
    """The run's prompt, to start another run with (the console starts runs with one)."""
    if isinstance(run_input, dict) and isinstance(run_input.get("prompt"), str):
        return str(run_input["prompt"])
    return ""


def _tool_call_row(call: dict[str, Any]) -> dict[str, Any]:
    outcome = call["error"] if call["error"] is not None else call["result"]
    return {
        **call,
        "arguments_summary": json_summary(call["arguments"]),
        "outcome_summary": "" if outcome is None else json_summary(outcome),
    }


@login_required
@require_POST
def run_note(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Append an operator note (``run.note``) to the run; members and above.

    Scripts (the page's form, sent with fetch) ask for JSON and get the note's seq, or
    the error as ``{"code", "message", "details"}``; a plain form post is redirected back
    to the stream page.
    """
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        run, _ = run_for_user(request.user, run_id, minimum_role=Role.MEMBER)
        message = request.POST.get("message", "").strip()
        if not message or len(message) > NOTE_MAX_CHARS:
            raise ValidationFailed(
                f"A note is between 1 and {NOTE_MAX_CHARS} characters.",
                details={"field": "message", "max_length": NOTE_MAX_CHARS},
            )
        seq = run_add_note(
            run_id=run.id, message=message, source=f"user:{request.user.get_username()}"
        )
    except AppError as error:
        if isinstance(error, NotFound) and not wants_json:
            raise Http404("No such run.") from None
        if wants_json:
            return JsonResponse(error.as_dict(), status=error.http_status)
        return HttpResponse(error.message, status=error.http_status, content_type="text/plain")
    if wants_json:
        return JsonResponse({"seq": seq}, status=201)
    return redirect(reverse("console:run-stream", args=[run.id]))
