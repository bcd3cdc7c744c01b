"""Runs over the API: idempotent creation (also under a race), listing, snapshot, events,
cancellation, each role, and other workspaces' runs."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.services.runs import run_add_note, run_cancel
from agentmaestro.runs.services.snapshot import run_snapshot
from tests.api.conftest import Clients
from tests.api.helpers import ApiClient, assert_error
from tests.factories import Personas

ROLES = ["owner", "admin", "member", "viewer"]
START = {"agent": "helper", "input": {"prompt": "hi"}}


def start(client: ApiClient, body: dict[str, Any] = START, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/workspaces/acme/runs/", body, **headers)


# --- creation -------------------------------------------------------------------------


def test_a_member_starts_a_run_and_its_first_tick_is_enqueued_after_commit(
    api: Clients, personas: Personas, django_capture_on_commit_callbacks: Any
) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = broker.llen("ticks")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = start(api.member)
        # Nothing is on the queue before the commit.
        assert broker.llen("ticks") == before
    assert response.status_code == 201
    run = AgentRun.objects.get(id=response.json()["id"])
    assert (run.status, run.input, run.agent_id) == ("PENDING", {"prompt": "hi"}, personas.agent.id)
    assert run.created_by_id == personas.member.pk
    assert response.json()["last_seq"] == 1
    for callback in callbacks:
        callback()
    messages = broker.lrange("ticks", 0, -1)
    assert broker.llen("ticks") == before + 1
    assert str(run.id).encode() in messages[0]
    broker.lpop("ticks")  # leave the queue as we found it


def test_the_agent_may_be_named_by_id(api: Clients, personas: Personas) -> None:
    response = start(api.member, {"agent": str(personas.agent.id), "input": {}})
    assert response.status_code == 201


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_members_and_above_start_runs(api: Clients, role: str) -> None:
    assert start(api.by_role(role)).status_code == 201


def test_a_viewer_cannot_start_a_run(api: Clients) -> None:
    assert_error(start(api.viewer), 403, "forbidden")
    assert not AgentRun.objects.exists()


def test_an_outsider_gets_404_for_the_workspace_and_its_agent(
    api: Clients, personas: Personas
) -> None:
    assert_error(start(api.outsider), 404, "not_found")
    body = {"agent": str(personas.other_agent.id), "input": {}}
    assert_error(start(api.member, body), 404, "not_found")
    assert not AgentRun.objects.exists()


def test_a_retry_with_the_same_key_returns_the_same_run(api: Clients) -> None:
    first = start(api.member, key="order-42")
    again = start(api.member, key="order-42")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert AgentRun.objects.count() == 1


def test_the_same_key_with_a_different_body_is_a_422(api: Clients) -> None:
    start(api.member, key="order-42")
    other = {"agent": "helper", "input": {"prompt": "something else"}}
    body = assert_error(start(api.member, other, key="order-42"), 422, "idempotency_key_reused")
    assert body["details"]["idempotency_key"] == "order-42"
    assert AgentRun.objects.count() == 1


def test_keys_are_per_workspace(api: Clients, personas: Personas) -> None:
    start(api.member, key="k")
    response = api.outsider.post(
        "/workspaces/globex/runs/",
        {"agent": "spy", "input": START["input"]},
        **{"Idempotency-Key": "k"},
    )
    assert response.status_code == 201
    assert AgentRun.objects.count() == 2


def test_without_a_key_every_request_is_a_new_run(api: Clients) -> None:
    start(api.member)
    start(api.member)
    assert AgentRun.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_run() -> None:
    from tests.factories import make_personas

    personas = make_personas()
    clients = [ApiClient(personas.member) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    results: list[Any] = [None] * len(clients)

    def call(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = start(clients[i], key="same-key")
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 7 + [201], statuses
    assert len({r.json()["id"] for r in results}) == 1
    assert AgentRun.objects.count() == 1


# --- listing --------------------------------------------------------------------------


def _runs(personas: Personas, count: int) -> list[AgentRun]:
    runs = [personas.run({"prompt": f"run {i}"}) for i in range(count)]
    return sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True)


@pytest.mark.parametrize("role", ROLES)
def test_every_member_lists_runs_newest_first(api: Clients, personas: Personas, role: str) -> None:
    runs = _runs(personas, 3)
    items = api.by_role(role).get("/workspaces/acme/runs/").json()["items"]
    assert [r["id"] for r in items] == [str(r.id) for r in runs]


@pytest.mark.replay_exempt("created_at is rewritten behind the log's back, to force a tie")
def test_the_cursor_walks_every_run_once(api: Clients, personas: Personas) -> None:
    runs = _runs(personas, 7)
    # Two runs with the same created_at: the id breaks the tie.
    AgentRun.objects.filter(id=runs[3].id).update(created_at=runs[2].created_at)
    expected = [
        str(r.id)
        for r in sorted(AgentRun.objects.all(), key=lambda r: (r.created_at, r.id), reverse=True)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.viewer.get("/workspaces/acme/runs/", params).json()
        seen += [r["id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3


def test_filters(api: Clients, personas: Personas) -> None:
    runs = _runs(personas, 3)
    run_cancel(run_id=runs[0].id)
    other_agent = personas.agent.__class__.objects.create(
        workspace=personas.workspace, slug="second", name="Second"
    )
    from agentmaestro.runs.services.runs import run_create

    mine = run_create(agent=other_agent, input={})

    def ids(**params: Any) -> list[str]:
        response = api.member.get("/workspaces/acme/runs/", params)
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["items"]]

    assert ids(status="CANCELLED") == [str(runs[0].id)]
    assert ids(agent="second") == [str(mine.id)]
    assert ids(agent=str(other_agent.id)) == [str(mine.id)]
    assert ids(agent="no-such-agent") == []
    middle = runs[1].created_at
    assert ids(created_before=middle.isoformat(), agent="helper") == [str(runs[2].id)]
    assert ids(created_after=middle.isoformat(), agent="helper") == [str(runs[0].id)]
    naive = (middle + timedelta(microseconds=0)).replace(tzinfo=None).isoformat()
    assert ids(created_after=naive, agent="helper") == [str(runs[0].id)]


def test_an_outsider_cannot_list_runs(api: Clients, personas: Personas) -> None:
    personas.run()
    assert_error(api.outsider.get("/workspaces/acme/runs/"), 404, "not_found")


# --- snapshot and events --------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_the_snapshot_is_the_runs_state_with_last_seq(
    api: Clients, personas: Personas, role: str
) -> None:
    run = personas.run()
    run_add_note(run_id=run.id, message="hello")
    body = api.by_role(role).get(f"/runs/{run.id}/").json()
    snapshot = run_snapshot(run.id)
    assert body["status"] == "PENDING"
    assert body["last_seq"] == snapshot["last_seq"] == 2
    assert body["steps"] == snapshot["steps"]
    assert body["tool_calls"] == snapshot["tool_calls"]
    assert body["run"] == {**snapshot["run"], "last_seq": 2}


def test_another_workspaces_run_is_not_found(api: Clients, personas: Personas) -> None:
    run = personas.run()
    for path in (f"/runs/{run.id}/", f"/runs/{run.id}/events/"):
        assert_error(api.outsider.get(path), 404, "not_found")
    assert_error(api.outsider.post(f"/runs/{run.id}/cancel/"), 404, "not_found")
    assert_error(api.member.get("/runs/00000000-0000-0000-0000-000000000000/"), 404, "not_found")


def test_events_come_in_order_after_since_seq(api: Clients, personas: Personas) -> None:
    run = personas.run()
    for i in range(5):
        run_add_note(run_id=run.id, message=f"note {i}")
    page = api.viewer.get(f"/runs/{run.id}/events/", {"since_seq": 2, "limit": 2}).json()
    assert [e["seq"] for e in page["items"]] == [3, 4]
    assert page["last_seq"] == 6
    assert [e["payload"]["message"] for e in page["items"]] == ["note 1", "note 2"]
    assert page["items"][0]["event_type"] == "run.note"
    everything = api.viewer.get(f"/runs/{run.id}/events/").json()["items"]
    assert [e["seq"] for e in everything] == [1, 2, 3, 4, 5, 6]
    assert api.viewer.get(f"/runs/{run.id}/events/", {"since_seq": 6}).json()["items"] == []


def test_event_pages_are_bounded(api: Clients, personas: Personas) -> None:
    run = personas.run()
    from agentmaestro.runs.events.store import append_events
    from agentmaestro.runs.events.types import NewEvent

    append_events(run.id, [NewEvent("run.note", {"message": "n", "source": "t"})] * 1100)
    assert len(api.viewer.get(f"/runs/{run.id}/events/").json()["items"]) == 100
    page = api.viewer.get(f"/runs/{run.id}/events/", {"limit": 1000}).json()["items"]
    assert len(page) == 1000
    assert_error(api.viewer.get(f"/runs/{run.id}/events/", {"limit": 1001}), 422, "invalid_input")


# --- cancel ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_members_and_above_cancel(api: Clients, personas: Personas, role: str) -> None:
    run = personas.run()
    response = api.by_role(role).post(f"/runs/{run.id}/cancel/", {"reason": "enough"})
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    assert response.json()["error"]["message"] == "enough"
    run.refresh_from_db()
    assert run.status == "CANCELLED"


def test_a_viewer_cannot_cancel(api: Clients, personas: Personas) -> None:
    run = personas.run()
    assert_error(api.viewer.post(f"/runs/{run.id}/cancel/"), 403, "forbidden")
    run.refresh_from_db()
    assert run.status == "PENDING"


def test_cancelling_a_finished_run_is_a_409(api: Clients, personas: Personas) -> None:
    run = personas.run()
    assert api.member.post(f"/runs/{run.id}/cancel/").status_code == 200
    body = assert_error(api.member.post(f"/runs/{run.id}/cancel/"), 409, "run_already_finished")
    assert body["details"] == {"status": "CANCELLED"}


def test_a_cancel_reason_is_bounded(api: Clients, personas: Personas) -> None:
    run = personas.run()
    assert_error(
        api.member.post(f"/runs/{run.id}/cancel/", {"reason": "x" * 2001}), 422, "invalid_input"
    )


def test_the_events_page_has_exactly_the_stream_frames(api: Clients, personas: Personas) -> None:
    from agentmaestro.runs.selectors import run_events_since

    run = personas.run()
    run_add_note(run_id=run.id, message='ünïcödé "quoted" \\ back')
    run_cancel(run_id=run.id, reason="done")
    page = api.viewer.get(f"/runs/{run.id}/events/").json()
    assert page["items"] == [event.as_frame() for event in run_events_since(run.id)]


@pytest.mark.parametrize("microsecond", [0, 1, 10, 120_000, 999_999])
def test_timestamps_read_as_text_match_iso(db: None, microsecond: int) -> None:
    from datetime import UTC, datetime

    from agentmaestro.common.time import iso, iso_from_db_text

    value = datetime(2026, 1, 2, 3, 4, 5, microsecond, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute("SELECT CAST(CAST(%s AS timestamptz) AS text)", [value])
        (text,) = cursor.fetchone()
    assert iso_from_db_text(text) == iso(value)
    # SQLite's form: Django's naive UTC text.
    assert iso_from_db_text(value.replace(tzinfo=None).isoformat(" ")) == iso(value)
