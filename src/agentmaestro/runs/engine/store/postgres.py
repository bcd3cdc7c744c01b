"""The PostgreSQL form of the step store: hand-written statements, one per operation.

Each statement is laid out and commented clause by clause below; what is sent is its
compacted form (``compact``). bench/engine.py measures them and replays them as its floor.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from django.db import connection

from agentmaestro.agents.models import Agent
from agentmaestro.runs.engine.store.rows import (
    Changes,
    Loaded,
    ModelContext,
    Stale,
    Written,
)
from agentmaestro.runs.events.store import check_events, events_json, stored_events
from agentmaestro.runs.models import AgentRun, AgentStep, ToolCall
from agentmaestro.runs.states import StepKind
from agentmaestro.tools.models import ToolDefinition


def compact(sql: str) -> str:
    """The statement as sent: comments dropped, whitespace collapsed.

    psycopg caches its parse of a query only up to 4,096 bytes; the commented forms
    below are longer, and parsing them again on every step measurably costs.
    """
    lines = (line.split("--", 1)[0] for line in sql.splitlines())
    return " ".join(" ".join(lines).split())


_PG_READ = """
SELECT r.workspace_id, r.agent_id, r.status, r.input, r.created_at, r.started_at, r.last_seq,
       r.finished_at, r.output, r.error, r.step_count, r.tool_call_count, r.input_tokens,
       r.output_tokens, r.tick_failures,
       a.max_steps, a.max_tool_calls, a.max_tokens, a.max_wall_seconds, a.tool_policy,
       a.model_settings, a.system_prompt,
       -- last_seq as this statement's snapshot saw it. r is the row as locked: if the
       -- statement waited for the lock, r is the newest version but everything else was
       -- read from the older snapshot, and the two last_seq differ (see _read_postgresql).
       (SELECT x.last_seq FROM runs_agentrun x WHERE x.id = r.id),
       m.id, m.index, m.status, m.payload, m.attempt, m.created_at, m.finished_at,
       -- the tool calls of the newest model turn, in the model's order
       (SELECT json_agg(json_build_array(c.id, s.id, c.tool_id, c.tool_name, c.provider_call_id,
                        c.position, c.arguments, c.status, c.result, c.error, c.attempt,
                        c.created_at, c.started_at, c.finished_at, c.lease_expires_at)
                        ORDER BY c.created_at, c.position)
          FROM runs_toolcall c JOIN runs_agentstep s ON s.id = c.step_id
         WHERE c.run_id = r.id AND s.run_id = r.id AND s.index > m.index),
       -- whether that turn's observations are already recorded
       EXISTS (SELECT 1 FROM runs_agentstep o
                WHERE o.run_id = r.id AND o.kind = 'OBSERVATION' AND o.index > m.index),
       -- the definitions of the tools in the agent's policy: any step may record a
       -- model's answer (an inline model is answered within the step) and vet its calls
       (SELECT json_agg(json_build_array(t.id, t.name, t.args_schema, t.executor,
                                         t.timeout_seconds))
          FROM tools_tooldefinition t
         WHERE t.workspace_id = r.workspace_id
           AND t.name IN (SELECT jsonb_object_keys(a.tool_policy)))
  FROM runs_agentrun r
  JOIN agents_agent a ON a.id = r.agent_id
  LEFT JOIN LATERAL (SELECT s.id, s.index, s.status, s.payload, s.attempt, s.created_at,
                            s.finished_at
                       FROM runs_agentstep s
                      WHERE s.run_id = r.id AND s.kind = 'MODEL_CALL'
                      ORDER BY s.index DESC LIMIT 1) m ON true
 WHERE r.id = %s
   FOR UPDATE OF r
"""
_PG_READ = compact(_PG_READ)


def _json(value: Any) -> Any:
    """jsonb arrives as text through Django's connection (it decodes JSONField itself)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def read_locked(run_id: uuid.UUID) -> Loaded | None:
    with connection.cursor() as cursor:
        cursor.execute(_PG_READ, [run_id])
        row = cursor.fetchone()
        if row is not None and row[6] != row[22]:  # the locked last_seq vs the snapshot's
            # We waited for the lock while another step committed: its changes are not in
            # this statement's snapshot. Now that we hold the lock, read again.
            cursor.execute(_PG_READ, [run_id])
            row = cursor.fetchone()
    if row is None:
        return None
    (workspace_id, agent_id, status, input_, created_at, started_at, last_seq) = row[:7]
    (finished_at, output, error) = row[7:10]
    (step_count, tool_call_count, input_tokens, output_tokens, tick_failures) = row[10:15]
    (max_steps, max_tool_calls, max_tokens, max_wall_seconds, policy, settings, prompt) = row[15:22]
    (m_id, m_index, m_status, m_payload, m_attempt, m_created, m_finished) = row[23:30]
    calls_json, observed, tools_json = row[30:33]
    run = AgentRun(
        id=run_id,
        workspace_id=workspace_id,
        agent_id=agent_id,
        status=status,
        input=_json(input_),
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        output=_json(output),
        error=_json(error),
        last_seq=last_seq,
        step_count=step_count,
        tool_call_count=tool_call_count,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        tick_failures=tick_failures,
    )
    agent = Agent(
        id=agent_id,
        workspace_id=workspace_id,
        max_steps=max_steps,
        max_tool_calls=max_tool_calls,
        max_tokens=max_tokens,
        max_wall_seconds=max_wall_seconds,
        tool_policy=_json(policy),
        model_settings=_json(settings),
        system_prompt=prompt,
    )
    model = None
    if m_id is not None:
        model = AgentStep(
            id=m_id,
            run_id=run_id,
            index=m_index,
            kind=StepKind.MODEL_CALL,
            status=m_status,
            payload=_json(m_payload),
            attempt=m_attempt,
            created_at=m_created,
            finished_at=m_finished,
        )
    calls = [
        ToolCall(
            id=uuid.UUID(c[0]),
            run_id=run_id,
            step_id=c[1],
            tool_id=uuid.UUID(c[2]) if c[2] else None,
            tool_name=c[3],
            provider_call_id=c[4],
            position=c[5],
            arguments=c[6],
            status=c[7],
            result=c[8],
            error=c[9],
            attempt=c[10],
            created_at=datetime.fromisoformat(c[11]),
            started_at=_ts(c[12]),
            finished_at=_ts(c[13]),
            lease_expires_at=_ts(c[14]),
        )
        for c in _json(calls_json) or ()
    ]
    tools = {
        t[1]: ToolDefinition(
            id=uuid.UUID(t[0]),
            workspace_id=workspace_id,
            name=t[1],
            args_schema=t[2],
            executor=t[3],
            timeout_seconds=t[4],
        )
        for t in _json(tools_json) or ()
    }
    return Loaded(run=run, agent=agent, model=model, calls=calls, observed=observed, tools=tools)


_PG_WRITE = """
WITH bump AS (
    -- The run's new fields, and k sequence numbers for the step's events -- if the run
    -- is still as the step read it (last_seq unchanged). After read_locked it is (the
    -- caller holds the lock); a step planned from memory (eager continuation) locks the
    -- row here, and gets no row back if another step committed first. Every other
    -- clause joins bump, so then nothing at all is written.
    UPDATE runs_agentrun
       SET last_seq = last_seq + %(k)s, status = %(status)s, started_at = %(started_at)s,
           finished_at = %(finished_at)s, output = %(output)s::jsonb, error = %(error)s::jsonb,
           step_count = %(step_count)s, tool_call_count = %(tool_call_count)s,
           input_tokens = %(input_tokens)s, output_tokens = %(output_tokens)s, tick_failures = 0
     WHERE id = %(run_id)s AND last_seq = %(expect_seq)s
 RETURNING last_seq, workspace_id, status
), finished_steps AS (
    -- Activities' results and cancellations; fenced: still STARTED, same attempt.
    UPDATE runs_agentstep s
       SET status = u.status, payload = u.payload, finished_at = u.finished_at,
           lease_expires_at = NULL
      FROM bump, jsonb_to_recordset(%(finished_steps)s::jsonb)
           AS u(index int, status text, payload jsonb, finished_at timestamptz, fence int)
     WHERE s.run_id = %(run_id)s AND s.index = u.index AND s.status = 'STARTED'
       AND (u.fence IS NULL OR s.attempt = u.fence)
 RETURNING s.id
), new_steps AS (
    INSERT INTO runs_agentstep
           (run_id, index, kind, status, payload, created_at, finished_at, attempt,
            lease_expires_at)
    SELECT %(run_id)s, i.index, i.kind, i.status, i.payload, i.created_at, i.finished_at,
           i.attempt, i.lease_expires_at
      FROM bump, jsonb_to_recordset(%(new_steps)s::jsonb)
           AS i(index int, kind text, status text, payload jsonb, created_at timestamptz,
                finished_at timestamptz, attempt int, lease_expires_at timestamptz)
 RETURNING id, index
), changed_calls AS (
    -- Tool results, claims and cancellations; fenced: same status and attempt as read.
    UPDATE runs_toolcall c
       SET status = u.status, attempt = u.attempt, result = NULLIF(u.result, 'null'),
           error = NULLIF(u.error, 'null'), started_at = u.started_at,
           finished_at = u.finished_at, lease_expires_at = u.lease_expires_at
      FROM bump, jsonb_to_recordset(%(changed_calls)s::jsonb)
           AS u(id uuid, status text, attempt int, result jsonb, error jsonb,
                started_at timestamptz, finished_at timestamptz, lease_expires_at timestamptz,
                fence_status text, fence_attempt int)
     WHERE c.id = u.id AND c.run_id = %(run_id)s AND c.status = u.fence_status
       AND c.attempt = u.fence_attempt
 RETURNING c.id
), new_calls AS (
    -- The TOOL_CALL step they belong to is inserted by this same statement.
    INSERT INTO runs_toolcall
           (id, run_id, step_id, tool_id, tool_name, provider_call_id, position, arguments,
            status, result, error, attempt, created_at, started_at, finished_at,
            lease_expires_at)
    SELECT i.id, %(run_id)s, (SELECT id FROM new_steps WHERE new_steps.index = i.step_index),
           i.tool_id, i.tool_name, i.provider_call_id, i.position, i.arguments, i.status,
           NULLIF(i.result, 'null'), NULLIF(i.error, 'null'), i.attempt, i.created_at,
           i.started_at, i.finished_at, i.lease_expires_at
      FROM bump, jsonb_to_recordset(%(new_calls)s::jsonb)
           AS i(id uuid, step_index int, tool_id uuid, tool_name text, provider_call_id text,
                position int, arguments jsonb, status text, result jsonb, error jsonb,
                attempt int, created_at timestamptz, started_at timestamptz,
                finished_at timestamptz, lease_expires_at timestamptz)
), events AS (
    -- The i-th event (1-based) gets old_last_seq + i = new_last_seq - k + i. The events
    -- are one JSON text (events/store.events_json): ->2 on the json type is a payload's
    -- own text, stored as written.
    INSERT INTO runs_runevent (run_id, seq, type, version, payload, created_at)
    SELECT %(run_id)s, bump.last_seq - %(k)s + e.ord, e.event ->> 0, (e.event ->> 1)::int,
           e.event -> 2, %(now)s
      FROM bump, json_array_elements(%(events)s::json) WITH ORDINALITY AS e(event, ord)
)
SELECT bump.last_seq, bump.workspace_id, bump.status,
       (SELECT count(*) FROM finished_steps), (SELECT count(*) FROM changed_calls),
       (SELECT json_agg(json_build_array(index, id)) FROM new_steps)
  FROM bump
"""
_PG_WRITE = compact(_PG_WRITE)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _dumps(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_default)


def write_changes(changes: Changes, now: datetime) -> Written:
    run = changes.run
    checked = check_events(changes.events)
    params: dict[str, Any] = {
        "run_id": run.id,
        "expect_seq": changes.expect_seq,
        "k": len(checked),
        "now": now,
        "status": run.status,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "output": None if run.output is None else json.dumps(run.output),
        "error": None if run.error is None else json.dumps(run.error),
        "step_count": run.step_count,
        "tool_call_count": run.tool_call_count,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "finished_steps": _dumps(
            [
                {
                    "index": s.index,
                    "status": s.status,
                    "payload": s.payload,
                    "finished_at": s.finished_at,
                    "fence": fence,
                }
                for s, fence in changes.finished_steps
            ]
        ),
        "new_steps": _dumps(
            [
                {
                    "index": s.index,
                    "kind": s.kind,
                    "status": s.status,
                    "payload": s.payload,
                    "created_at": s.created_at,
                    "finished_at": s.finished_at,
                    "attempt": s.attempt,
                    "lease_expires_at": s.lease_expires_at,
                }
                for s in changes.new_steps
            ]
        ),
        "changed_calls": _dumps(
            [
                {
                    "id": c.id,
                    "status": c.status,
                    "attempt": c.attempt,
                    "result": c.result,
                    "error": c.error,
                    "started_at": c.started_at,
                    "finished_at": c.finished_at,
                    "lease_expires_at": c.lease_expires_at,
                    "fence_status": fence_status,
                    "fence_attempt": fence_attempt,
                }
                for c, fence_status, fence_attempt in changes.changed_calls
            ]
        ),
        "new_calls": _dumps(
            [
                {
                    "id": c.id,
                    "step_index": step_index,
                    "tool_id": c.tool_id,
                    "tool_name": c.tool_name,
                    "provider_call_id": c.provider_call_id,
                    "position": c.position,
                    "arguments": c.arguments,
                    "status": c.status,
                    "result": c.result,
                    "error": c.error,
                    "attempt": c.attempt,
                    "created_at": c.created_at,
                    "started_at": c.started_at,
                    "finished_at": c.finished_at,
                    "lease_expires_at": c.lease_expires_at,
                }
                for c, step_index in changes.new_calls
            ]
        ),
        "events": events_json(checked),
    }
    with connection.cursor() as cursor:
        cursor.execute(_PG_WRITE, params)
        row = cursor.fetchone()
    if row is None:
        raise Stale(f"run {run.id} moved on since it was read (or is gone)")
    last_seq, workspace_id, status, finished, changed, new_ids = row
    stored = stored_events(run.id, last_seq - len(checked) + 1, checked, now)
    return Written(
        last_seq=last_seq,
        events=stored,
        workspace_id=workspace_id,
        status=status,
        step_ids={index: step_id for index, step_id in _json(new_ids) or ()},
        finished_steps=finished,
        changed_calls=changed,
    )


_PG_MODEL_CONTEXT = """
SELECT a.system_prompt, r.input, a.model_settings, a.tool_policy,
       (SELECT json_agg(json_build_array(s.kind, s.status, s.payload) ORDER BY s.index)
          FROM runs_agentstep s
         WHERE s.run_id = r.id AND s.kind IN ('MODEL_CALL', 'OBSERVATION') AND s.index < %s),
       (SELECT json_agg(json_build_array(t.name, t.description, t.args_schema) ORDER BY t.name)
          FROM tools_tooldefinition t
         WHERE t.workspace_id = r.workspace_id
           AND t.name IN (SELECT jsonb_object_keys(a.tool_policy)))
  FROM runs_agentrun r JOIN agents_agent a ON a.id = r.agent_id
 WHERE r.id = %s
"""
_PG_MODEL_CONTEXT = compact(_PG_MODEL_CONTEXT)


def read_model_context(run_id: uuid.UUID, before_index: int) -> ModelContext:
    with connection.cursor() as cursor:
        cursor.execute(_PG_MODEL_CONTEXT, [before_index, run_id])
        row = cursor.fetchone()
    if row is None:
        raise AgentRun.DoesNotExist(f"no run {run_id}")
    prompt, input_, settings, policy, steps, tools = row
    return ModelContext(
        system_prompt=prompt,
        input=_json(input_),
        model_settings=_json(settings),
        tool_policy=_json(policy),
        steps=[(k, s, p) for k, s, p in _json(steps) or ()],
        tools=[
            ToolDefinition(name=n, description=d, args_schema=a) for n, d, a in _json(tools) or ()
        ],
    )
