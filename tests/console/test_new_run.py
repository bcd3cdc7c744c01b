"""Starting a run from the console: the dashboard's form and the stream page's "New run"."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse

from agentmaestro.runs.models import AgentRun
from tests.factories import Personas

pytestmark = pytest.mark.django_db

START_URL = "/runs/new/"

CaptureOnCommit = Callable[..., AbstractContextManager[list[Callable[[], None]]]]


def logged_in(user: Any, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def test_the_url_is_the_one_the_forms_post_to() -> None:
    assert reverse("console:run-start") == START_URL


def test_a_member_starts_a_run_whose_first_tick_is_enqueued_after_the_commit(
    personas: Personas, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    client = logged_in(personas.member)

    with mock.patch("agentmaestro.runs.dispatch.enqueue_tick") as enqueue:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = client.post(START_URL, {"agent": str(personas.agent.id), "prompt": " go "})
        assert enqueue.call_count == 0  # not before the commit
        for callback in callbacks:
            callback()

    run = AgentRun.objects.get()
    assert (run.agent_id, run.input, run.status) == (personas.agent.id, {"prompt": "go"}, "PENDING")
    assert run.created_by_id == personas.member.pk
    enqueue.assert_called_once_with(run.id)
    assert response.status_code == 302
    assert response["Location"] == reverse("console:run-detail", args=[run.id])


@pytest.mark.parametrize("who", ["viewer", "outsider"])
def test_viewers_and_outsiders_start_no_runs(personas: Personas, who: str) -> None:
    client = logged_in(getattr(personas, who))

    response = client.post(START_URL, {"agent": str(personas.agent.id), "prompt": "go"})

    assert response.status_code == {"viewer": 403, "outsider": 404}[who]
    assert not AgentRun.objects.exists()


@pytest.mark.parametrize(
    ("agent", "prompt", "status"),
    [("", "go", 404), ("not-a-uuid", "go", 404), (None, "  ", 400), (None, "x" * 4001, 400)],
)
def test_a_bad_agent_or_prompt_starts_nothing(
    personas: Personas, agent: str | None, prompt: str, status: int
) -> None:
    client = logged_in(personas.member)

    response = client.post(
        START_URL, {"agent": str(personas.agent.id) if agent is None else agent, "prompt": prompt}
    )

    assert response.status_code == status
    assert not AgentRun.objects.exists()


def test_starting_a_run_needs_post_csrf_and_a_login(personas: Personas, client: Client) -> None:
    data = {"agent": str(personas.agent.id), "prompt": "go"}

    assert logged_in(personas.member).get(START_URL).status_code == 405
    assert logged_in(personas.member, csrf=True).post(START_URL, data).status_code == 403
    anonymous = client.post(START_URL, data)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("console:login"))
    assert not AgentRun.objects.exists()


def test_the_home_page_offers_the_agents_the_user_may_run(personas: Personas) -> None:
    member_page = logged_in(personas.member).get("/", follow=True).content.decode()
    viewer_page = logged_in(personas.viewer).get("/", follow=True).content.decode()

    assert 'id="new-run-form"' in member_page
    assert f'<option value="{personas.agent.id}" data-slug="helper">Helper</option>' in member_page
    assert str(personas.other_agent.id) not in member_page
    assert 'id="new-run-form"' not in viewer_page


def test_the_stream_page_offers_members_a_new_run_with_the_same_prompt(
    personas: Personas,
) -> None:
    run = personas.run({"prompt": "Plan a trip to Porto"})
    url = reverse("console:run-stream", args=[run.id])

    member_page = logged_in(personas.member).get(url).content.decode()
    viewer_page = logged_in(personas.viewer).get(url).content.decode()

    assert 'id="rerun-form"' in member_page
    assert f'name="agent" value="{personas.agent.id}"' in member_page
    assert 'value="Plan a trip to Porto"' in member_page
    assert 'id="rerun-form"' not in viewer_page
