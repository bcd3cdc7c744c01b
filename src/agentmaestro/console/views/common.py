"""Helpers shared by the console's views, and the small views that belong to no page."""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from agentmaestro.common.errors import NotFound
from agentmaestro.console.selectors import workspace_for_user, workspaces_for_user
from agentmaestro.workspaces.models import Role, Workspace

# Summaries of JSON values are cut here, the same way the pages' scripts cut the ones
# they add.
SUMMARY_CHARS = 160
ASSET_DIR = Path(__file__).resolve().parent.parent / "static" / "console"
MODULE_NAME = re.compile(r"[a-z][a-z0-9_]*\.js")


def json_summary(value: Any) -> str:
    """Compact JSON with sorted keys, clipped: what the page's script shows for a value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "\u2026"


def display_time(iso: str | None) -> str:
    """An ISO timestamp as the pages show it (UTC, to the second), like their scripts."""
    return "" if iso is None else iso[:19].replace("T", " ")


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def workspace_or_404(request: HttpRequest, slug: str) -> tuple[Workspace, Role]:
    try:
        return workspace_for_user(request.user, slug)
    except NotFound:
        raise Http404("No such workspace.") from None


def nav_context(
    request: HttpRequest, workspace: Workspace | None, role: Role | None
) -> dict[str, Any]:
    """What base.html's top bar needs: the current workspace, the others, the user's role."""
    return {
        "workspace": workspace,
        "role": role,
        "can_write": role is not None and Role.at_least(role, Role.MEMBER),
        "workspaces": [w for w, _ in workspaces_for_user(request.user)],
    }


@cache
def _module(name: str) -> tuple[bytes, str]:
    body = (ASSET_DIR / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@require_GET
def asset(request: HttpRequest, name: str) -> HttpResponse:
    """The console's JavaScript modules, served by the app itself.

    ``agentmaestro web`` serves no static files (a proxy would, after collectstatic), and
    ES modules import each other by URL, so they cannot be inlined into the page like the
    CSS; this view serves exactly the ``*.js`` files of console/static/console/. They are
    public code, so no login is needed; the ETag lets browsers revalidate cheaply.
    """
    if not MODULE_NAME.fullmatch(name) or not (ASSET_DIR / name).is_file():
        raise Http404("No such asset.")
    if settings.DEBUG:
        _module.cache_clear()
    body, etag = _module(name)
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    return response
