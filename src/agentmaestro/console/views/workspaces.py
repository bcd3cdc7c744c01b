"""The home redirect and a workspace's dashboard: its runs, live, and the new-run form."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from agentmaestro.agents.models import Agent
from agentmaestro.common.errors import NotFound
from agentmaestro.console.demo import DEMO_PROMPT
from agentmaestro.console.selectors import (
    run_list,
    run_status_counts,
    workspaces_for_user,
)
from agentmaestro.console.views.common import nav_context, workspace_or_404
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.selectors import run_for_user
from agentmaestro.runs.states import RunStatus

PROMPT_MAX_CHARS = 4000
# Groups of statuses the filter offers besides the single ones.
ACTIVE = "active"
ACTIVE_STATUSES = [s.value for s in RunStatus if not s.is_terminal]


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The first of the user's workspaces; a page saying so when they have none."""
    workspaces = workspaces_for_user(request.user)
    if workspaces:
        return redirect(reverse("console:dashboard", args=[workspaces[0][0].slug]))
    return render(request, "console/no_workspace.html", nav_context(request, None, None))


@login_required
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    workspace, role = workspace_or_404(request, slug)
    agents = list(Agent.objects.filter(workspace=workspace).order_by("slug"))
    status = request.GET.get("status", "")
    if status != ACTIVE and status not in RunStatus.__members__:
        status = ""
    agent_slug = request.GET.get("agent", "")
    agent = next((a for a in agents if a.slug == agent_slug), None)
    statuses = ACTIVE_STATUSES if status == ACTIVE else ([status] if status else [])
    runs = run_list(workspace, statuses=statuses, agent_id=agent.id if agent is not None else None)
    counts = run_status_counts(workspace)
    context = nav_context(request, workspace, role)
    live: dict[str, Any] = {
        "workspace_id": str(workspace.id),
        "statuses": statuses,
        "agent": agent.slug if agent is not None else "",
        "heartbeat_seconds": settings.AGENTMAESTRO_WS_HEARTBEAT_SECONDS,
        "row_url": reverse("console:run-row", args=[uuid.UUID(int=0)]),
    }
    context.update(
        {
            "runs": runs,
            "agents": agents,
            "status_filter": status,
            "agent_filter": agent.slug if agent is not None else "",
            "status_choices": [(ACTIVE, "Active (not finished)")]
            + [(s.value, s.value.replace("_", " ").capitalize()) for s in RunStatus],
            "counts": [
                ("Active", sum(counts.get(s, 0) for s in ACTIVE_STATUSES), ACTIVE),
                ("Completed", counts.get(RunStatus.COMPLETED, 0), RunStatus.COMPLETED.value),
                ("Failed", counts.get(RunStatus.FAILED, 0), RunStatus.FAILED.value),
                ("Cancelled", counts.get(RunStatus.CANCELLED, 0), RunStatus.CANCELLED.value),
            ],
            "total_runs": sum(counts.values()),
            "live": live,
            "prompt_max_chars": PROMPT_MAX_CHARS,
            "default_prompt": DEMO_PROMPT,
        }
    )
    return render(request, "console/dashboard.html", context)


@login_required
def run_row(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """One row of the dashboard's run table, for the page's script to insert or refresh."""
    try:
        run, _ = run_for_user(request.user, run_id)
    except NotFound:
        raise Http404("No such run.") from None
    run = AgentRun.objects.select_related("agent", "workspace").get(id=run.id)
    return render(request, "console/_run_row.html", {"run": run})
