"""The engine's hot path: read a run's state under its lock, and write one step's changes.

Every step of every run passes through here twice — once to read, once to write — so
this is where ``bench/engine.py`` says the time goes, and where it is written by hand:

* :func:`read_locked` — one ``SELECT … FOR UPDATE OF r`` that returns the run, its
  agent's budgets and policy, the newest model step, the tool calls of that turn,
  whether their observations exist, and the definitions of the tools in the agent's
  policy.
* :func:`write_changes` — one statement (on PostgreSQL) that writes everything a step
  decided: the run's new fields and its ``last_seq`` bump, finished activities (fenced
  by attempt), new steps, new tool calls and the events, with
  their sequence numbers taken from the bump.

Both run inside the caller's transaction (``engine/tick.py``), which holds the run's row
lock from the read to the commit. PostgreSQL gets single hand-written statements;
SQLite (standalone, in-process, one writer at a time) gets the same behaviour through
the ORM in several statements (``orm.py``). ``tests/engine/test_eager.py`` checks that
the two forms write the same runs, and runs on SQLite in the conformance suite.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connection

from agentmaestro.runs.engine.store import orm, postgres
from agentmaestro.runs.engine.store.rows import (
    Changes,
    FenceFailed,
    Loaded,
    ModelContext,
    Stale,
    Written,
)

__all__ = [
    "Changes",
    "FenceFailed",
    "Loaded",
    "ModelContext",
    "Stale",
    "Written",
    "hand_written",
    "read_locked",
    "read_model_context",
    "write_changes",
]


def hand_written() -> bool:
    """Whether this connection takes the hand-written statements (else the ORM form)."""
    return connection.vendor == "postgresql"


def read_locked(run_id: uuid.UUID) -> Loaded | None:
    """The run's state, its row locked until the caller's transaction ends."""
    return postgres.read_locked(run_id) if hand_written() else orm.read_locked(run_id)


def write_changes(changes: Changes, now: datetime) -> Written:
    """Write ``changes`` in the caller's transaction.

    Raises Stale (nothing written) if the run's last_seq is no longer
    ``changes.expect_seq``, FenceFailed (the caller rolls back) if a fenced row moved.
    """
    if hand_written():
        written = postgres.write_changes(changes, now)
    else:
        written = orm.write_changes(changes, now)
    if written.finished_steps != len(changes.finished_steps) or written.changed_calls != len(
        changes.changed_calls
    ):
        raise FenceFailed(f"run {changes.run.id}: a claimed row moved under the write")
    for step in changes.new_steps:
        step.id = written.step_ids[step.index]
    return written


def read_model_context(run_id: uuid.UUID, before_index: int) -> ModelContext:
    """What a model call needs: the conversation before ``before_index``, the tools."""
    if hand_written():
        return postgres.read_model_context(run_id, before_index)
    return orm.read_model_context(run_id, before_index)
