"""The console's pages: who sees what, and what each page shows.

Every page checks membership on the server: a workspace, run or agent of a workspace the
user is not in answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from agentmaestro.runs.services.runs import run_add_note, run_create
from agentmaestro.runs.services.steps import step_append
from agentmaestro.runs.services.transitions import run_transition
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus
from agentmaestro.tools.services import builtin_tools_install
from agentmaestro.workspaces.models import Role
from agentmaestro.workspaces.services import membership_set, workspace_create
from tests.factories import Personas, make_user

pytestmark = pytest.mark.django_db

MEMBERS = ["owner", "admin", "member", "viewer"]


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def embedded(response: Any, script_id: str) -> dict[str, Any]:
    match = re.search(
        rf'<script id="{script_id}" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match, f"the page embeds no {script_id}"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def pages(personas: Personas) -> dict[str, str]:
    run = personas.run()
    slug = personas.workspace.slug
    return {
        "dashboard": reverse("console:dashboard", args=[slug]),
        "agents": reverse("console:agents", args=[slug]),
        "agent": reverse("console:agent-detail", args=[slug, personas.agent.slug]),
        "run": reverse("console:run-detail", args=[run.id]),
        "row": reverse("console:run-row", args=[run.id]),
        "stream": reverse("console:run-stream", args=[run.id]),
    }


@pytest.mark.parametrize("who", MEMBERS)
def test_every_member_sees_every_page(personas: Personas, who: str) -> None:
    client = logged_in(getattr(personas, who))

    for name, url in pages(personas).items():
        assert client.get(url).status_code == 200, name


def test_an_outsider_finds_none_of_them(personas: Personas) -> None:
    client = logged_in(personas.outsider)

    for name, url in pages(personas).items():
        assert client.get(url).status_code == 404, name


def test_an_unknown_workspace_run_or_agent_is_not_found_either(personas: Personas) -> None:
    client = logged_in(personas.member)
    slug = personas.workspace.slug

    assert client.get(reverse("console:dashboard", args=["nope"])).status_code == 404
    assert client.get(reverse("console:agent-detail", args=[slug, "nope"])).status_code == 404
    assert client.get(reverse("console:run-detail", args=[uuid.uuid4()])).status_code == 404
    # An agent of another workspace, named under this one, is not found.
    other = reverse("console:agent-detail", args=[slug, personas.other_agent.slug])
    assert client.get(other).status_code == 404


def test_anonymous_visitors_are_sent_to_the_login_page(personas: Personas, client: Client) -> None:
    for name, url in pages(personas).items():
        response = client.get(url)
        assert response.status_code == 302, name
        assert response["Location"] == f"{reverse('console:login')}?next={url}", name


def test_home_goes_to_the_first_workspace_of_the_user(personas: Personas) -> None:
    response = logged_in(personas.viewer).get("/")

    assert response.status_code == 302
    assert response["Location"] == reverse("console:dashboard", args=["acme"])


def test_home_says_so_when_the_user_has_no_workspace(db: None) -> None:
    loner = make_user("lonely")

    response = logged_in(loner).get("/")

    assert response.status_code == 200
    assert "No workspace yet" in response.content.decode()


def test_the_workspace_switcher_lists_only_the_users_workspaces(personas: Personas) -> None:
    third = workspace_create(slug="initech", name="Initech", owner=personas.outsider)
    membership_set(workspace=third, user=personas.member, role=Role.VIEWER)

    page = logged_in(personas.member).get(reverse("console:dashboard", args=["acme"]))

    content = page.content.decode()
    assert reverse("console:dashboard", args=["initech"]) in content
    assert reverse("console:dashboard", args=["globex"]) not in content


def test_the_dashboard_lists_the_workspaces_runs_newest_first(personas: Personas) -> None:
    first = personas.run({"prompt": "first"})
    second = personas.run({"prompt": "second"})
    run_create(agent=personas.other_agent, input={"prompt": "theirs"}, created_by=personas.outsider)

    response = logged_in(personas.viewer).get(reverse("console:dashboard", args=["acme"]))

    ids = re.findall(r'<tr data-run-id="([0-9a-f-]+)"', response.content.decode())
    assert ids == [str(second.id), str(first.id)]
    live = embedded(response, "dashboard-initial")
    assert live["workspace_id"] == str(personas.workspace.id)


def test_the_dashboard_filters_by_status_and_agent(personas: Personas) -> None:
    pending = personas.run({"prompt": "waits"})
    running = personas.run({"prompt": "goes"})
    run_transition(run_id=running.id, to_status=RunStatus.RUNNING)
    other_agent = personas.agent.workspace.agents.create(slug="second", name="Second")
    theirs = run_create(agent=other_agent, input={"prompt": "x"}, created_by=personas.member)
    client = logged_in(personas.member)
    url = reverse("console:dashboard", args=["acme"])

    def listed(query: str) -> set[str]:
        return set(
            re.findall(r'<tr data-run-id="([0-9a-f-]+)"', client.get(url + query).content.decode())
        )

    assert listed("?status=RUNNING") == {str(running.id)}
    assert listed("?status=PENDING") == {str(pending.id), str(theirs.id)}
    assert listed("?status=active") == {str(pending.id), str(running.id), str(theirs.id)}
    assert listed("?agent=second") == {str(theirs.id)}
    assert listed("?status=PENDING&agent=helper") == {str(pending.id)}
    assert listed("?status=bogus") == {str(pending.id), str(running.id), str(theirs.id)}


def test_only_members_and_above_get_the_new_run_form(personas: Personas) -> None:
    url = reverse("console:dashboard", args=["acme"])

    for who in MEMBERS:
        page = logged_in(getattr(personas, who)).get(url).content.decode()
        assert ('id="new-run-form"' in page) == (who != "viewer"), who


def test_the_run_row_is_the_dashboards_row(personas: Personas) -> None:
    run = personas.run({"prompt": "Plan a trip to Porto"})

    row = logged_in(personas.viewer).get(reverse("console:run-row", args=[run.id]))

    content = row.content.decode()
    assert content.startswith(f'<tr data-run-id="{run.id}" data-status="PENDING"')
    assert "Plan a trip to Porto" in content


def test_the_run_page_embeds_the_snapshot_its_events_and_model_step_ids(
    personas: Personas,
) -> None:
    run = personas.run({"prompt": "Plan a trip"})
    run_transition(run_id=run.id, to_status=RunStatus.RUNNING)
    step = step_append(
        run_id=run.id, kind=StepKind.MODEL_CALL, payload={"turn": 0}, status=StepStatus.STARTED
    )
    run_add_note(run_id=run.id, message="hello", source="test")

    response = logged_in(personas.viewer).get(reverse("console:run-detail", args=[run.id]))

    initial = embedded(response, "run-initial")
    assert initial["snapshot"]["last_seq"] == 4
    assert [e["seq"] for e in initial["events"]] == [1, 2, 3, 4]
    assert initial["snapshot"]["run"]["status"] == "RUNNING"
    assert initial["step_ids"] == {str(step.id): 1}
    assert "Plan a trip" in response.content.decode()


def test_only_members_and_above_get_the_cancel_button(personas: Personas) -> None:
    run = personas.run()
    url = reverse("console:run-detail", args=[run.id])

    for who in MEMBERS:
        page = logged_in(getattr(personas, who)).get(url).content.decode()
        assert ('id="cancel-button"' in page) == (who != "viewer"), who


def test_the_agent_page_shows_its_settings_policy_and_runs(personas: Personas) -> None:
    builtin_tools_install(workspace=personas.workspace)
    agent = personas.agent
    agent.model_settings = {"provider": "openai", "model": "gpt-x", "api_key": "sk-secret"}
    agent.tool_policy = {
        "calculator": {"mode": "allow"},
        "echo": {"mode": "approve", "approver_role": "admin"},
        "mystery": {"mode": "deny"},
    }
    agent.save()
    run = personas.run({"prompt": "count"})

    page = (
        logged_in(personas.viewer)
        .get(reverse("console:agent-detail", args=["acme", agent.slug]))
        .content.decode()
    )

    assert "gpt-x" in page
    assert "sk-secret" not in page
    assert re.findall(r'<tr data-tool="([a-z_]+)"', page) == ["calculator", "echo", "mystery"]
    assert "by admin" in page
    assert "not defined" in page  # mystery is in the policy but not a tool here
    assert f'data-run-id="{run.id}"' in page


def test_the_agents_page_lists_this_workspaces_agents_only(personas: Personas) -> None:
    page = logged_in(personas.viewer).get(reverse("console:agents", args=["acme"])).content.decode()

    assert re.findall(r'data-agent="([a-z-]+)"', page) == ["helper"]


def test_the_console_modules_are_served_as_javascript(client: Client) -> None:
    response = client.get(reverse("console:asset", args=["run_detail.js"]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    again = client.get(
        reverse("console:asset", args=["run_detail.js"]), HTTP_IF_NONE_MATCH=response["ETag"]
    )
    assert again.status_code == 304
    for name in ["console.css", "..%2Fviews.py", "nope.js", "run_stream.js.bak"]:
        assert client.get(f"/assets/{name}").status_code == 404, name
