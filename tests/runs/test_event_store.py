from __future__ import annotations

import pytest
from django.db import transaction

from agentmaestro.runs.events.contracts import InvalidEventPayload, UnknownEventType
from agentmaestro.runs.events.store import RunNotFound, append_event, append_events
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentRun, RunEvent


def seqs(run: AgentRun) -> list[int]:
    return list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))


def test_a_new_run_starts_its_log_at_seq_1(personas):
    run = personas.run()
    assert seqs(run) == [1]
    assert RunEvent.objects.get(run=run).type == "run.created"


def test_a_batch_gets_consecutive_seqs_in_order(personas):
    run = personas.run()
    stored = append_events(run.id, [NewEvent("run.note", {"message": str(i)}) for i in range(10)])
    assert [e.seq for e in stored] == list(range(2, 12))
    assert seqs(run) == list(range(1, 12))
    rows = RunEvent.objects.filter(run=run, seq__gt=1).order_by("seq")
    assert [r.payload["message"] for r in rows] == [str(i) for i in range(10)]
    run.refresh_from_db()
    assert run.last_seq == 11


def test_an_invalid_payload_writes_nothing(personas):
    run = personas.run()
    with pytest.raises(InvalidEventPayload) as caught:
        append_events(
            run.id, [NewEvent("run.note", {"message": "ok"}), NewEvent("run.note", {"msg": 1})]
        )
    assert caught.value.code == "invalid_event_payload"
    assert seqs(run) == [1]


def test_an_unknown_type_is_refused(personas):
    run = personas.run()
    with pytest.raises(UnknownEventType):
        append_event(run.id, "run.exploded", {})


def test_appending_to_a_missing_run_raises_not_found(db):
    import uuid

    with pytest.raises(RunNotFound):
        append_event(uuid.uuid4(), "run.note", {"message": "x"})


def test_a_rollback_consumes_no_seq(personas):
    run = personas.run()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        append_event(run.id, "run.note", {"message": "lost"})
        raise Boom
    assert append_event(run.id, "run.note", {"message": "kept"}).seq == 2
    assert seqs(run) == [1, 2]
