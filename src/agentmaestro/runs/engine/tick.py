"""One step of a run: lock it, record finished activities, ``decide()``, write, commit.

:func:`advance` is the only writer of the engine's progress. In one short transaction
holding the run row's lock it

1. reads the run's state (``store.read_locked``: one statement);
2. records the results of activities that finished, if any — each fenced by the attempt
   that produced it, so a superseded or cancelled attempt's result is discarded;
3. asks the pure ``decide()`` what happens next and turns its commands into rows and
   events (``plan.Plan``, pure);
4. writes all of it (``store.write_changes``: one statement on PostgreSQL) and commits.

Only then are the activities it started enqueued (or, under eager continuation, run by
this worker — :func:`drive`). A result and the decision it enables commit together, so
no wake-up can be lost: whoever commits last sees everything committed before it under
the same lock (docs/engine.md).
"""

from __future__ import annotations

import logging
import math
import time
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agentmaestro.runs.engine.decide import Command, decide
from agentmaestro.runs.engine.plan import ActivityResult, Plan, TickResult
from agentmaestro.runs.engine.store import FenceFailed, read_locked, write_changes

logger = logging.getLogger(__name__)

# Attempts to write a step whose fenced rows moved under it (a concurrent claim).
MAX_FENCE_RETRIES = 5


# --- the step ----------------------------------------------------------------------------


def advance(
    run_id: uuid.UUID,
    results: tuple[ActivityResult, ...] = (),
    *,
    eager_until: float | None = None,
    decide_next: bool = True,
) -> TickResult | None:
    """Record ``results`` and take the run's next decision, in one commit.

    Returns None if there is no such run. Idempotent: with nothing to record and
    nothing to decide it writes nothing, so duplicate deliveries are harmless.

    ``eager_until`` (a ``time.monotonic()`` deadline) turns on eager continuation: the
    fast activities the step starts are claimed for the caller to run inline, and an
    inline model call (no I/O) is answered right here, its turn decided in the same
    commit — until the deadline passes.

    ``decide_next=False`` only records the results and enqueues a tick after commit —
    two commits instead of one, the same outcome (the tests build in-between states
    with it).
    """
    for attempt in range(MAX_FENCE_RETRIES):
        try:
            return _advance_once(run_id, results, eager_until, decide_next=decide_next)
        except FenceFailed:
            # A claim moved a row we were finishing; read again (the result may be stale).
            logger.info("run %s: fenced row moved, retrying step (%d)", run_id, attempt + 1)
    return _advance_once(run_id, results, eager_until, decide_next=decide_next)


def _eager(eager_until: float | None) -> bool:
    return eager_until is not None and time.monotonic() < eager_until


def _advance_once(
    run_id: uuid.UUID,
    results: tuple[ActivityResult, ...],
    eager_until: float | None,
    *,
    decide_next: bool,
) -> TickResult | None:
    from agentmaestro.runs import dispatch
    from agentmaestro.runs.engine import activities

    with transaction.atomic():
        loaded = read_locked(run_id)
        if loaded is None:
            return None
        now = timezone.now()
        plan = Plan(loaded, now, eager=_eager(eager_until))
        plan.result.accepted = [plan.record(outcome) for outcome in results]
        commands: list[Command] = []
        try:
            if decide_next:
                commands = decide(plan.state())
                for command in commands:
                    plan.apply(command)
                # An inline model call is answered inside this step: the same claim and
                # fencing as an activity, but no commit, no broker hop, no second read.
                while (inline := plan.take_inline_model()) is not None:
                    answer = activities.answer_inline(inline, plan.changes.new_steps)
                    plan.record(answer)
                    plan.eager = _eager(eager_until)
                    more = decide(plan.state())
                    for command in more:
                        plan.apply(command)
                    commands += more
        except Exception:
            if not results:
                raise
            # Keep the results; the tick enqueued below will raise again, visibly, and be
            # counted towards failing the run (reconciler.MAX_TICK_FAILURES).
            logger.exception("run %s: deciding after a result failed", run_id)
            decide_next = False
            plan = Plan(read_locked(run_id) or loaded, now, eager=False)
            plan.result.accepted = [plan.record(outcome) for outcome in results]
            commands = []
        if not decide_next and any(plan.result.accepted):
            transaction.on_commit(lambda: dispatch.enqueue_tick(run_id))
        result = plan.result
        result.commands = commands
        if plan.changes:
            write_changes(plan.changes, now)
            step_ids = {s.index: s.id for s in plan.changes.new_steps}
            result.model_steps = [step_ids[index] for index in result.model_steps]
            # (Claimed inline model calls were answered above: only tool calls remain.)
        elif loaded.run.tick_failures:
            from agentmaestro.runs.models import AgentRun

            AgentRun.objects.filter(id=run_id).update(tick_failures=0)
        if result.model_steps or result.tool_calls:
            model_steps, tool_calls = result.model_steps, result.tool_calls
            transaction.on_commit(lambda: dispatch.start_activities(model_steps, tool_calls))
        elif commands and not result.status.is_terminal and not result.claimed:
            # The run moved but started nothing that will report back (every tool call
            # of the turn was refused, say): no result will wake it, so wake it here,
            # or it would sit idle until the reconciler's grace period ran out.
            transaction.on_commit(lambda: dispatch.enqueue_tick(run_id))
    return result


def tick(run_id: uuid.UUID) -> TickResult | None:
    """Take the run's next decision; activities it starts go to the broker."""
    return advance(run_id)


def drive(
    run_id: uuid.UUID, results: tuple[ActivityResult, ...] = (), *, slice_ms: float | None = None
) -> TickResult | None:
    """:func:`advance`, then eager continuation: run the fast activities it claimed here,
    record them and decide again, until the run waits on something slow or the time
    slice is used up. Claims, leases and fencing are exactly those of the broker path,
    so a worker that dies in the middle is recovered the same way.

    The slice starts after the first step, which always continues eagerly: on a busy
    worker (hundreds of threads sharing one interpreter) reaching the first decision
    alone can take longer than a slice, and handing the very next built-in tool to the
    broker then only adds load where there is already too much.
    """
    from agentmaestro.runs.engine import activities

    budget = settings.CONFIG.eager_slice_ms if slice_ms is None else slice_ms
    if budget <= 0:
        return advance(run_id, results)
    outcome = advance(run_id, results, eager_until=math.inf)
    deadline = time.monotonic() + budget / 1000
    while outcome is not None and outcome.claimed:
        done = tuple(activities.run_inline(activity) for activity in outcome.claimed)
        outcome = advance(run_id, done, eager_until=deadline)
    return outcome
