from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from agentmaestro.common.errors import NotFound
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.selectors import run_for_user
from agentmaestro.runs.services.snapshot import run_snapshot


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@login_required
def home(request: HttpRequest) -> HttpResponse:
    runs = (
        AgentRun.objects.filter(workspace__memberships__user=request.user)
        .select_related("agent", "workspace")
        .order_by("-created_at")[:50]
    )
    return render(request, "console/home.html", {"runs": runs})


@login_required
def run_stream(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """The stream test page: the run's snapshot, then its events live over the WebSocket."""
    try:
        run, role = run_for_user(request.user, run_id)
    except NotFound:
        raise Http404("No such run.") from None
    snapshot = run_snapshot(run.id)
    return render(
        request,
        "console/run_stream.html",
        {"run": run, "role": role, "snapshot": snapshot},
    )
