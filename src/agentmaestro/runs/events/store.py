"""The append path: the one place events are written.

Appending ``k`` events to a run is one counter bump (``last_seq = last_seq + k``) and
one multi-row INSERT in the caller's transaction, so the sequence numbers are gapless:
a rollback undoes the bump with the rows. On PostgreSQL both are one statement (one
round trip); SQLite cannot chain data-modifying ``WITH`` clauses, so it takes two
(in-process, so cheap). ``tests/runs/test_event_store.py`` runs the same conformance
tests against both; ``bench/events.py`` measures this path against plain psycopg.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from agentmaestro.common.errors import NotFound
from agentmaestro.runs.events.broadcast import Message, broadcaster
from agentmaestro.runs.events.contracts import registry
from agentmaestro.runs.events.types import NewEvent, StoredEvent

_PG_APPEND = """
WITH bump AS (
    -- Reserve k sequence numbers; the row lock this takes serializes appenders per run
    -- until commit, and a rollback gives the numbers back.
    UPDATE runs_agentrun SET last_seq = last_seq + %(k)s
    WHERE id = %(run_id)s
    RETURNING last_seq, workspace_id, status
)
INSERT INTO runs_runevent (run_id, seq, type, version, payload, created_at)
-- The i-th new event (1-based) gets old_last_seq + i = new_last_seq - k + i.
-- The events are one JSON text (events_json): ->2 on the json type is a payload's own text.
SELECT %(run_id)s, bump.last_seq - %(k)s + e.ord, e.event ->> 0, (e.event ->> 1)::int,
       e.event -> 2, %(now)s
FROM bump, json_array_elements(%(events)s::json) WITH ORDINALITY AS e(event, ord)
RETURNING seq, (SELECT workspace_id FROM bump), (SELECT status FROM bump)
"""

_SQLITE_BUMP = """
UPDATE runs_agentrun SET last_seq = last_seq + %s WHERE id = %s
RETURNING last_seq, workspace_id, status
"""


def payload_text(payload: Any) -> str:
    """An event payload as stored: compact JSON text (runs.models.EventPayloadField)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class RunNotFound(NotFound):
    code = "run_not_found"


def append_event(
    run_id: uuid.UUID, type: str, payload: dict[str, Any], *, now: datetime | None = None
) -> StoredEvent:
    return append_events(run_id, [NewEvent(type, payload)], now=now)[0]


def append_events(
    run_id: uuid.UUID,
    events: Sequence[NewEvent],
    *,
    broadcast: bool = True,
    now: datetime | None = None,
) -> list[StoredEvent]:
    """Append ``events`` to the run's log in the current transaction (or a new one).

    Payloads are validated against their newest contract first, so an invalid event
    writes nothing. Broadcasting happens only after commit; a rollback sends nothing
    and consumes no sequence number. ``broadcast=False``: the caller announces the
    events itself (``announce_on_commit``), with other messages that must go first.
    ``now``: the events' time, by default the clock's. A writer whose rows' times the
    events stand for (a step's ``created_at``, say: the contracts leave those times to
    the event) passes the reading it stamped the rows with.
    """
    if not events:
        return []
    checked = check_events(events)
    now = now or timezone.now()
    # Inside the caller's transaction no savepoint is needed (it would cost a round trip):
    # the caller's atomic block decides. Alone, the append is its own transaction.
    block = nullcontext() if connection.in_atomic_block else transaction.atomic()
    with block:
        if connection.vendor == "postgresql":
            first_seq, workspace_id, status = _append_postgresql(run_id, checked, now)
        else:
            first_seq, workspace_id, status = _append_sqlite(run_id, checked, now)
        stored = stored_events(run_id, first_seq, checked, now)
        if broadcast:
            announce_on_commit(workspace_id, status, stored)
    return stored


Checked = list[tuple[str, int, dict[str, Any]]]


def events_json(checked: Checked) -> str:
    """Checked events as PostgreSQL statements take them: one JSON text of
    ``[type, version, payload]`` triples, split by ``json_array_elements``. One text
    parameter costs the client far less to send than an array per column (psycopg dumps
    lists in Python, element by element: 16% of a busy worker's Python time)."""
    triples = (
        f"[{json.dumps(type_)},{version},{payload_text(payload)}]"
        for type_, version, payload in checked
    )
    return "[" + ",".join(triples) + "]"


def check_events(events: Sequence[NewEvent]) -> Checked:
    """Validate each payload against its newest contract: (type, version, JSON-ready payload)."""
    return [(event.type, *registry.validate(event.type, event.payload)) for event in events]


def stored_events(
    run_id: uuid.UUID, first_seq: int, checked: Checked, now: datetime
) -> list[StoredEvent]:
    """The stored form of events just inserted from ``first_seq``.

    For writers that insert events inside a larger statement of their own (the engine's
    step commit, runs/engine/store/) but must announce them exactly as this module does.
    """
    return [
        StoredEvent(run_id, first_seq + i, type_, version, payload, now)
        for i, (type_, version, payload) in enumerate(checked)
    ]


def announce_on_commit(
    workspace_id: uuid.UUID,
    status: str,
    events: Sequence[StoredEvent],
    before: Sequence[tuple[str, Message]] = (),
) -> None:
    """Broadcast ``events`` once the current transaction commits (at once in autocommit,
    where the statement that wrote them has committed already); ``before``: ephemeral
    messages that go out first, in the same round trip."""
    transaction.on_commit(
        lambda: broadcaster.publish_events(workspace_id, status, events, before=before),
        robust=True,
    )


def _append_postgresql(run_id: uuid.UUID, checked: Checked, now: Any) -> tuple[int, uuid.UUID, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            _PG_APPEND,
            {
                "k": len(checked),
                "run_id": run_id,
                "now": now,
                "events": events_json(checked),
            },
        )
        rows = cursor.fetchall()
    if not rows:
        raise RunNotFound("No such run.", details={"run_id": str(run_id)})
    first_seq = min(row[0] for row in rows)
    return first_seq, rows[0][1], rows[0][2]


def _append_sqlite(run_id: uuid.UUID, checked: Checked, now: Any) -> tuple[int, uuid.UUID, str]:
    run_key = run_id.hex
    with connection.cursor() as cursor:
        cursor.execute(_SQLITE_BUMP, [len(checked), run_key])
        row = cursor.fetchone()
        if row is None:
            raise RunNotFound("No such run.", details={"run_id": str(run_id)})
        last_seq, workspace_hex, status = row
        first_seq = last_seq - len(checked) + 1
        created = connection.ops.adapt_datetimefield_value(now)
        values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(checked))
        params: list[Any] = []
        for i, (type_, version, payload) in enumerate(checked):
            params += [run_key, first_seq + i, type_, version, payload_text(payload), created]
        cursor.execute(
            f"INSERT INTO runs_runevent (run_id, seq, type, version, payload, created_at) "
            f"VALUES {values}",
            params,
        )
    return first_seq, uuid.UUID(hex=workspace_hex), status
