"""Runs in the admin: findable, read-only, and cancelled only through run_cancel."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentmaestro.runs.models import AgentRun, RunEvent, ToolCall
from agentmaestro.runs.services.runs import run_create
from agentmaestro.runs.services.steps import step_append, tool_call_create
from agentmaestro.runs.services.transitions import run_transition
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus, ToolCallStatus
from tests.factories import PASSWORD, Personas, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:runs_agentrun_changelist")


def listed(response: Any) -> set[Any]:
    assert response.status_code == 200, response.content[:500]
    return {run.id for run in response.context["cl"].result_list}


def running_run(personas: Personas, **input: Any) -> AgentRun:
    run = personas.run(input or None)
    run_transition(run_id=run.id, to_status=RunStatus.RUNNING)
    return run


def cancel_action(client: Client, *runs: AgentRun) -> Any:
    return client.post(
        CHANGELIST,
        {"action": "cancel_runs", "_selected_action": [str(run.id) for run in runs]},
        follow=True,
    )


def texts(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def test_the_changelist_filters_by_status(admin_client: Client, personas: Personas) -> None:
    pending = personas.run()
    running = running_run(personas)

    assert listed(admin_client.get(CHANGELIST, {"status__exact": "RUNNING"})) == {running.id}
    assert listed(admin_client.get(CHANGELIST, {"status__exact": "PENDING"})) == {pending.id}


def test_the_changelist_filters_by_agent_and_by_workspace(
    admin_client: Client, personas: Personas
) -> None:
    ours = personas.run()
    theirs = run_create(agent=personas.other_agent, input={"prompt": "x"})

    by_agent = admin_client.get(CHANGELIST, {"agent__id__exact": str(personas.other_agent.id)})
    by_workspace = admin_client.get(
        CHANGELIST, {"workspace__id__exact": str(personas.workspace.id)}
    )

    assert listed(by_agent) == {theirs.id}
    assert listed(by_workspace) == {ours.id}


def test_the_changelist_filters_by_created_date(admin_client: Client, personas: Personas) -> None:
    run = personas.run()
    changelist = admin_client.get(CHANGELIST).context["cl"]
    (date_filter,) = (f for f in changelist.filter_specs if f.field_path == "created_at")
    links = {
        choice["display"]: choice["query_string"] for choice in date_filter.choices(changelist)
    }
    tomorrow = (timezone.now() + timedelta(days=1)).isoformat()

    today = admin_client.get(CHANGELIST + links["Today"])
    from_tomorrow = admin_client.get(CHANGELIST, {"created_at__gte": tomorrow})

    assert listed(today) == {run.id}
    assert listed(from_tomorrow) == set()


def test_search_finds_a_run_by_its_exact_id(admin_client: Client, personas: Personas) -> None:
    wanted = personas.run()
    personas.run()

    assert listed(admin_client.get(CHANGELIST, {"q": str(wanted.id)})) == {wanted.id}
    # Part of an id is not an id: it is searched as input text, and matches nothing.
    assert listed(admin_client.get(CHANGELIST, {"q": str(wanted.id)[:8]})) == set()


def test_search_finds_runs_by_text_in_their_input(admin_client: Client, personas: Personas) -> None:
    lisbon = personas.run({"prompt": "What is the weather in Lisbon?"})
    personas.run({"prompt": "Summarise the release notes"})
    nested = personas.run({"messages": [{"role": "user", "content": "Flights to LISBON"}]})

    assert listed(admin_client.get(CHANGELIST, {"q": "lisbon"})) == {lisbon.id, nested.id}
    assert listed(admin_client.get(CHANGELIST, {"q": "weather in"})) == {lisbon.id}


def test_the_run_page_shows_steps_tool_calls_and_events_read_only(
    admin_client: Client, personas: Personas
) -> None:
    run = running_run(personas)
    step = step_append(
        run_id=run.id, kind=StepKind.MODEL_CALL, payload={"text": "hi"}, status=StepStatus.COMPLETED
    )
    tool_call_create(run_id=run.id, step=step, tool_name="search", arguments={"q": "x"})
    url = reverse("admin:runs_agentrun_change", args=[run.id])

    response = admin_client.get(url)

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    formsets = {fs.opts.model.__name__: fs for fs in response.context["inline_admin_formsets"]}
    assert set(formsets) == {"AgentStep", "ToolCall", "RunEvent"}
    for formset in formsets.values():
        assert not formset.has_add_permission
        assert not formset.has_change_permission
        assert not formset.has_delete_permission
    seqs = [form.instance.seq for form in formsets["RunEvent"].formset.forms]
    assert seqs == list(range(1, RunEvent.objects.filter(run=run).count() + 1))
    assert [f.instance.tool_name for f in formsets["ToolCall"].formset.forms] == ["search"]
    # Nothing on the page can be submitted, and a forged submission changes nothing.
    assert b'name="_save"' not in response.content
    assert admin_client.post(url, {"status": "COMPLETED"}).status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_runs_cannot_be_added_or_deleted_in_the_admin(
    admin_client: Client, personas: Personas
) -> None:
    run = personas.run()

    assert admin_client.get(reverse("admin:runs_agentrun_add")).status_code == 403
    delete = reverse("admin:runs_agentrun_delete", args=[run.id])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert AgentRun.objects.filter(id=run.id).exists()


def test_the_cancel_action_cancels_runs_through_run_cancel(
    admin_client: Client, admin_user: Any, personas: Personas
) -> None:
    run = running_run(personas)
    call = tool_call_create(run_id=run.id, step=None, tool_name="search", arguments={})

    response = cancel_action(admin_client, run)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.error == {"code": "cancelled", "message": f"Cancelled by {admin_user.username}."}
    # run_cancel's whole effect: the open tool call is cancelled with the run, and both
    # changes are in the log, the status change last.
    assert ToolCall.objects.get(id=call.id).status == ToolCallStatus.CANCELLED
    last = RunEvent.objects.filter(run=run).order_by("-seq").first()
    assert last is not None
    assert (last.type, last.payload["to_status"]) == ("run.status_changed", "CANCELLED")
    assert texts(response) == [("success", "Cancelled 1 run.")]


def test_the_cancel_action_reports_a_finished_run_as_an_error(
    admin_client: Client, personas: Personas
) -> None:
    finished = running_run(personas)
    run_transition(run_id=finished.id, to_status=RunStatus.COMPLETED, output={"answer": 42})
    running = running_run(personas)
    events_before = RunEvent.objects.filter(run=finished).count()

    response = cancel_action(admin_client, finished, running)

    assert texts(response) == [
        ("error", f"Run {finished.id} was not cancelled: The run already ended (COMPLETED)."),
        ("success", "Cancelled 1 run."),
    ]
    finished.refresh_from_db()
    running.refresh_from_db()
    assert finished.status == RunStatus.COMPLETED
    assert RunEvent.objects.filter(run=finished).count() == events_before
    assert running.status == RunStatus.CANCELLED


def test_staff_who_may_only_view_runs_get_no_cancel_action(personas: Personas) -> None:
    viewer = make_user("view-only-staff")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_agentrun"))
    run = running_run(personas)
    client = Client()
    client.force_login(viewer)

    page = client.get(CHANGELIST)
    attempt = cancel_action(client, run)

    assert listed(page) == {run.id}
    assert b"cancel_runs" not in page.content
    assert attempt.status_code == 200  # the admin answers "no action selected"
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_a_user_who_is_not_staff_cannot_reach_the_admin(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)

    index = client.get(reverse("admin:index"))
    runs = client.get(CHANGELIST)

    assert index.status_code == 302
    assert index["Location"].startswith(reverse("admin:login"))
    assert runs.status_code == 302


def test_the_admin_login_refuses_a_user_who_is_not_staff(
    client: Client, personas: Personas
) -> None:
    response = client.post(
        reverse("admin:login"),
        {"username": personas.owner.username, "password": PASSWORD, "next": "/admin/"},
    )

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
