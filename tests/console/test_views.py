"""The console's pages: who may see a run's stream page, and who may add notes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from agentmaestro.runs.models import AgentRun, RunEvent
from agentmaestro.runs.services.runs import run_add_note, run_create
from agentmaestro.runs.services.steps import step_append
from agentmaestro.runs.states import StepKind
from tests.factories import PASSWORD, Personas

pytestmark = pytest.mark.django_db


def stream_url(run: AgentRun) -> str:
    return reverse("console:run-stream", args=[run.id])


def notes_url(run: AgentRun) -> str:
    return reverse("console:run-note", args=[run.id])


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def embedded_stream(response: Any) -> dict[str, Any]:
    match = re.search(
        r'<script id="stream-initial" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match, "the page embeds no stream state"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_the_stream_page_needs_a_login(client: Client, personas: Personas) -> None:
    run = personas.run()

    response = client.get(stream_url(run))

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('console:login')}?next={stream_url(run)}"


def test_a_member_can_log_in_through_the_console_login_page(
    client: Client, personas: Personas
) -> None:
    response = client.post(
        reverse("console:login"),
        {"username": personas.viewer.username, "password": PASSWORD, "next": "/"},
    )

    assert response.status_code == 302
    assert client.get("/", follow=True).status_code == 200


def test_the_stream_page_of_a_run_in_another_workspace_is_not_found(
    personas: Personas,
) -> None:
    run = personas.run()

    assert logged_in(personas.outsider).get(stream_url(run)).status_code == 404


def test_the_stream_page_embeds_the_snapshot_and_the_events_up_to_its_last_seq(
    personas: Personas,
) -> None:
    run = personas.run()
    step_append(run_id=run.id, kind=StepKind.MODEL_CALL, payload={"text": "thinking"})
    run_add_note(run_id=run.id, message="hello", source="test")

    response = logged_in(personas.viewer).get(stream_url(run))

    stream = embedded_stream(response)
    assert stream["last_seq"] == 3
    assert stream["status"] == "PENDING"
    assert [(e["seq"], e["event_type"]) for e in stream["events"]] == [
        (1, "run.created"),
        (2, "step.created"),
        (3, "run.note"),
    ]
    assert stream["events"][2]["payload"] == {"message": "hello", "source": "test"}
    content = response.content.decode()
    assert 'data-index="1"' in content  # the snapshot's step, rendered by the server
    assert "MODEL_CALL" in content


def test_a_viewer_sees_neither_the_note_form_nor_the_cancel_button(personas: Personas) -> None:
    run = personas.run()

    viewer_page = logged_in(personas.viewer).get(stream_url(run)).content.decode()
    member_page = logged_in(personas.member).get(stream_url(run)).content.decode()

    assert 'id="note-form"' not in viewer_page
    assert 'id="cancel-button"' not in viewer_page
    assert 'id="note-form"' in member_page
    assert 'id="cancel-button"' in member_page


def test_a_member_adds_a_note_and_gets_its_seq(personas: Personas) -> None:
    run = personas.run()

    response = logged_in(personas.member).post(
        notes_url(run), {"message": "  looks stuck  "}, HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 201
    assert response.json() == {"seq": 2}
    event = RunEvent.objects.get(run=run, seq=2)
    assert event.type == "run.note"
    assert event.payload == {"message": "looks stuck", "source": "user:member-user"}


def test_a_note_posted_without_javascript_returns_to_the_stream_page(personas: Personas) -> None:
    run = personas.run()

    response = logged_in(personas.member).post(notes_url(run), {"message": "plain form"})

    assert response.status_code == 302
    assert response["Location"] == stream_url(run)
    assert RunEvent.objects.filter(run=run, type="run.note").count() == 1


def test_a_viewer_may_not_add_notes(personas: Personas) -> None:
    run = personas.run()

    response = logged_in(personas.viewer).post(
        notes_url(run), {"message": "hi"}, HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert not RunEvent.objects.filter(run=run, type="run.note").exists()


def test_an_outsider_adding_a_note_finds_no_run(personas: Personas) -> None:
    run = personas.run()

    as_json = logged_in(personas.outsider).post(
        notes_url(run), {"message": "hi"}, HTTP_ACCEPT="application/json"
    )
    as_form = logged_in(personas.outsider).post(notes_url(run), {"message": "hi"})

    assert as_json.status_code == 404
    assert as_json.json()["code"] == "not_found"
    assert as_form.status_code == 404
    assert not RunEvent.objects.filter(run=run, type="run.note").exists()


@pytest.mark.parametrize("message", ["", "   ", "x" * 2001])
def test_an_empty_or_overlong_note_is_refused(personas: Personas, message: str) -> None:
    run = personas.run()

    response = logged_in(personas.member).post(
        notes_url(run), {"message": message}, HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not RunEvent.objects.filter(run=run, type="run.note").exists()


def test_a_note_without_the_csrf_token_is_refused(personas: Personas) -> None:
    run = personas.run()
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.member)

    response = client.post(notes_url(run), {"message": "forged"})

    assert response.status_code == 403
    assert not RunEvent.objects.filter(run=run, type="run.note").exists()


def test_notes_are_only_posted(personas: Personas) -> None:
    run = personas.run()

    assert logged_in(personas.member).get(notes_url(run)).status_code == 405


def test_the_home_page_lists_only_the_users_runs(personas: Personas) -> None:
    ours = personas.run()
    theirs = run_create(agent=personas.other_agent, input={"prompt": "secret"})

    content = logged_in(personas.viewer).get("/", follow=True).content.decode()

    assert reverse("console:run-detail", args=[ours.id]) in content
    assert str(theirs.id) not in content
