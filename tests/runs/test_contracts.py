from __future__ import annotations

import copy

import pytest
from pydantic import JsonValue

from agentmaestro.common.time import iso
from agentmaestro.runs.events import docs
from agentmaestro.runs.events.contracts import (
    EventPayload,
    EventRegistry,
    InvalidEventPayload,
    registry,
)
from agentmaestro.runs.events.store import append_event
from agentmaestro.runs.events.types import StoredEvent
from agentmaestro.runs.models import RunEvent
from agentmaestro.runs.replay import ReplayError, fold
from agentmaestro.runs.selectors import run_events_since
from agentmaestro.runs.services.steps import step_append, step_update, tool_call_create
from agentmaestro.runs.states import StepKind, StepStatus
from tests.factories import Personas
from tests.replay import assert_replays


def test_docs_events_md_is_generated_from_the_current_contracts() -> None:
    assert docs.DOC_PATH.read_text() == docs.render(), "docs/events.md is stale: ./dev eventdocs"


def test_every_type_and_version_is_documented() -> None:
    text = docs.render()
    for name, event_type in registry.types.items():
        assert f"### `{name}` (current version {event_type.current_version})" in text
        for version in event_type.versions:
            assert f"#### v{version} " in text


def test_payloads_are_closed_and_typed() -> None:
    with pytest.raises(InvalidEventPayload) as extra:
        registry.validate("run.note", {"message": "x", "surprise": 1})
    assert extra.value.details["errors"][0]["type"] == "extra_forbidden"
    with pytest.raises(InvalidEventPayload):
        registry.validate("run.status_changed", {"from_status": "PENDING", "to_status": "NAPPING"})


def make_versioned_registry() -> EventRegistry:
    events = EventRegistry()

    @events.contract("greeting", 1)
    class GreetingV1(EventPayload):
        text: str

    @events.contract("greeting", 2)
    class GreetingV2(EventPayload):
        text: str
        language: str

    @events.contract("greeting", 3)
    class GreetingV3(EventPayload):
        words: list[str]
        language: str

    @events.upcaster("greeting", 1)
    def v1_to_v2(payload: dict[str, JsonValue]) -> dict[str, JsonValue]:
        return {**payload, "language": "en"}

    @events.upcaster("greeting", 2)
    def v2_to_v3(payload: dict[str, JsonValue]) -> dict[str, JsonValue]:
        return {"words": str(payload["text"]).split(), "language": payload["language"]}

    return events


def test_old_versions_upcast_step_by_step_to_the_newest() -> None:
    events = make_versioned_registry()
    assert events.upcast("greeting", 1, {"text": "hello there"}) == (
        3,
        {"words": ["hello", "there"], "language": "en"},
    )
    assert events.upcast("greeting", 2, {"text": "hallo", "language": "de"}) == (
        3,
        {"words": ["hallo"], "language": "de"},
    )
    assert events.validate("greeting", {"words": ["hi"], "language": "en"})[0] == 3


def test_a_version_without_an_upcaster_is_refused() -> None:
    events = EventRegistry()

    @events.contract("thing", 1)
    class ThingV1(EventPayload):
        a: int

    @events.contract("thing", 2)
    class ThingV2(EventPayload):
        b: int

    with pytest.raises(ValueError, match="thing v1 has no upcaster"):
        events.check_complete()


def test_stored_old_versions_are_upcast_when_read(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = personas.run()
    stored = append_event(run.id, "run.note", {"message": "written as v1"})
    assert stored.version == 1

    # A later release moves run.note to v2; the stored v1 row must read as v2.
    note = copy.deepcopy(registry.types["run.note"])

    class RunNoteV2(EventPayload):
        text: str
        source: str
        severity: str

    note.versions[2] = RunNoteV2
    note.upcasters[1] = lambda p: {"text": p["message"], "source": p["source"], "severity": "info"}
    monkeypatch.setitem(registry.types, "run.note", note)

    read = run_events_since(run.id, since_seq=1)
    assert [(e.version, e.payload) for e in read] == [
        (2, {"text": "written as v1", "source": "system", "severity": "info"})
    ]


def test_a_stored_v1_tool_call_created_reads_as_v3_and_keeps_its_key(personas: Personas) -> None:
    """tool_call.created v1 repeated the call's idempotency key (v2 left it out: it is
    always <run id>:<call id>) and its times (v3 leaves them to the event). A v1 row
    reads as v3, and the fold derives the same key and times the snapshot shows."""
    run = personas.run()
    call = tool_call_create(run_id=run.id, step=None, tool_name="search", arguments={"q": "x"})
    event = RunEvent.objects.get(run=run, type="tool_call.created")
    assert event.version == 3
    assert not {"idempotency_key", "created_at", "started_at", "finished_at"} & set(event.payload)
    v1 = {
        **event.payload,
        "idempotency_key": f"{run.id}:{call.id}",
        "created_at": iso(call.created_at),
        "started_at": None,
        "finished_at": None,
    }
    RunEvent.objects.filter(run=run, seq=event.seq).update(version=1, payload=v1)

    read = [e for e in run_events_since(run.id) if e.type == "tool_call.created"]
    assert [(e.version, e.payload) for e in read] == [(3, event.payload)]
    snapshot = assert_replays(run.id)
    assert snapshot["tool_calls"][0]["idempotency_key"] == f"{run.id}:{call.id}"
    assert snapshot["tool_calls"][0]["created_at"] == iso(event.created_at)


def test_stored_v1_step_events_read_as_v2_and_fold_to_the_same_snapshot(
    personas: Personas,
) -> None:
    """step.created and step.updated v1 repeated the step's times; v2 leaves them to the
    event's envelope. Rows written as v1 read as v2, and the fold still gives the
    snapshot's times."""
    run = personas.run()
    step = step_append(run_id=run.id, kind=StepKind.MODEL_CALL, payload={"turn": 0})
    step = step_update(
        run_id=run.id, index=step.index, status=StepStatus.COMPLETED, payload={"turn": 0}
    )
    created = RunEvent.objects.get(run=run, type="step.created")
    updated = RunEvent.objects.get(run=run, type="step.updated")
    assert (created.version, updated.version) == (2, 2)
    assert "created_at" not in created.payload
    assert "finished_at" not in updated.payload
    RunEvent.objects.filter(run=run, seq=created.seq).update(
        version=1,
        payload={**created.payload, "created_at": iso(step.created_at), "finished_at": None},
    )
    RunEvent.objects.filter(run=run, seq=updated.seq).update(
        version=1, payload={**updated.payload, "finished_at": iso(step.finished_at)}
    )

    read = {e.type: (e.version, e.payload) for e in run_events_since(run.id)}
    assert read["step.created"] == (2, created.payload)
    assert read["step.updated"] == (2, updated.payload)
    snapshot = assert_replays(run.id)
    assert snapshot["steps"][0]["created_at"] == iso(step.created_at)
    assert snapshot["steps"][0]["finished_at"] == iso(step.finished_at)


def test_every_registered_type_has_a_fold_rule(personas: Personas) -> None:
    """fold() raises on a type it does not know; every contract must be handled."""
    run = personas.run()
    created = run_events_since(run.id)[0]
    unhandled = []
    for name in registry.types:
        if name == "run.created":
            continue
        probe = StoredEvent(run.id, 2, name, 1, {}, created.created_at)
        try:
            fold([created, probe])
        except ReplayError as exc:
            if "no fold rule" in str(exc):
                unhandled.append(name)
        except (KeyError, TypeError):
            pass  # the rule exists and tripped over the empty probe payload
    assert unhandled == []


def _run_created(at: str) -> dict[str, object]:
    """A run.created payload for folds built by hand."""
    return {
        "workspace_id": "w",
        "agent_id": "a",
        "input": {},
        "parent_run_id": None,
        "parent_tool_call_id": None,
        "created_by_id": None,
        "created_at": at,
    }


def test_fold_refuses_a_gap() -> None:
    import uuid
    from datetime import UTC, datetime

    run_id = uuid.uuid4()
    now = datetime.now(UTC)
    created = StoredEvent(run_id, 1, "run.created", 1, _run_created(now.isoformat()), now)
    note = StoredEvent(run_id, 3, "run.note", 1, {"message": "m", "source": "s"}, now)
    with pytest.raises(ReplayError, match="expected seq 2"):
        fold([created, note])


def test_fold_sums_turn_usage_and_reads_older_logs_alike() -> None:
    """A run's usage is the sum of its completed model turns' usage; a log from before
    (a run.usage_updated with the totals after each turn) folds to the same totals."""
    import uuid
    from datetime import UTC, datetime

    run_id = uuid.uuid4()
    now = datetime.now(UTC)
    at = now.isoformat()
    created = _run_created(at)

    def turn(index: int, used: tuple[int, int]) -> dict[str, object]:
        usage = {"input_tokens": used[0], "output_tokens": used[1]}
        return {"turn": index, "text": "", "usage": usage}

    def model_step(index: int, status: str, payload: dict[str, object]) -> dict[str, object]:
        return {
            "index": index,
            "kind": "MODEL_CALL",
            "status": status,
            "payload": payload,
            "created_at": at,
            "finished_at": at,
        }

    old = [
        ("run.created", created),
        ("step.created", {**model_step(1, "STARTED", {"turn": 0}), "finished_at": None}),
        (
            "step.updated",
            {"index": 1, "status": "COMPLETED", "payload": turn(0, (3, 2)), "finished_at": at},
        ),
        ("run.usage_updated", {"input_tokens": 3, "output_tokens": 2}),
    ]
    new = [
        ("step.created", model_step(2, "COMPLETED", turn(1, (5, 1)))),
        # A failed turn has no usage to add.
        ("step.created", model_step(3, "FAILED", {"error": {"code": "x", "message": "y"}})),
    ]
    events = [
        StoredEvent(run_id, seq, type_, 1, payload, now)
        for seq, (type_, payload) in enumerate([*old, *new], start=1)
    ]
    assert fold(events[:4])["run"]["usage"] == {"input_tokens": 3, "output_tokens": 2}
    assert fold(events)["run"]["usage"] == {"input_tokens": 8, "output_tokens": 3}
