"""A workspace's agents, and one agent's configuration, tool policy and recent runs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from agentmaestro.common.errors import NotFound
from agentmaestro.console.demo import DEMO_PROMPT
from agentmaestro.console.selectors import (
    agent_in_workspace,
    agent_rows,
    agent_tool_policy,
    model_settings_summary,
    run_list,
)
from agentmaestro.console.views.common import nav_context, workspace_or_404
from agentmaestro.console.views.workspaces import PROMPT_MAX_CHARS

RECENT_RUNS = 20


@login_required
def agent_list(request: HttpRequest, slug: str) -> HttpResponse:
    workspace, role = workspace_or_404(request, slug)
    context = nav_context(request, workspace, role)
    context["rows"] = agent_rows(workspace)
    return render(request, "console/agent_list.html", context)


@login_required
def agent_detail(request: HttpRequest, slug: str, agent_slug: str) -> HttpResponse:
    workspace, role = workspace_or_404(request, slug)
    try:
        agent = agent_in_workspace(workspace, agent_slug)
    except NotFound:
        raise Http404("No such agent.") from None
    context = nav_context(request, workspace, role)
    context.update(
        {
            "agent": agent,
            "model_settings": model_settings_summary(agent),
            "policy": agent_tool_policy(agent),
            "runs": run_list(workspace, agent_id=agent.id, limit=RECENT_RUNS),
            "prompt_max_chars": PROMPT_MAX_CHARS,
            "default_prompt": DEMO_PROMPT,
        }
    )
    return render(request, "console/agent_detail.html", context)
