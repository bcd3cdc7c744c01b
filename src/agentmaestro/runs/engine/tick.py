"""One step of a run: lock it, record finished activities, ``decide()``, write, commit.

:func:`advance` is the only writer of the engine's progress. In one short transaction
holding the run row's lock it

1. reads the run's state (``store.read_locked``: one statement);
2. records the results of activities that finished, if any — each fenced by the attempt
   that produced it, so a superseded or cancelled attempt's result is discarded;
3. asks the pure ``decide()`` what happens next and turns its commands into rows and
   events (``plan.Plan``, pure);
4. writes all of it (``store.write_changes``: one statement on PostgreSQL) and commits.

Only then are the activities it started enqueued. Under eager continuation the step
itself runs built-in tools and answers an inline model, and :func:`drive` takes the next
step at once instead of through the broker. A result and the decision it enables commit together, so
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

from agentmaestro.runs.engine.decide import Command, ImpossibleState, decide
from agentmaestro.runs.engine.plan import ActivityResult, Continuation, Plan, TickResult
from agentmaestro.runs.engine.store import (
    FenceFailed,
    Loaded,
    Stale,
    hand_written,
    read_locked,
    write_changes,
)
from agentmaestro.runs.events.store import announce_on_commit

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
    continuation: Continuation | None = None,
) -> TickResult | None:
    """Record ``results`` and take the run's next decision, in one commit.

    Returns None if there is no such run. Idempotent: with nothing to record and
    nothing to decide it writes nothing, so duplicate deliveries are harmless.

    ``eager_until`` (a ``time.monotonic()`` deadline) turns on eager continuation until
    it passes: built-in tool calls run inside the step, and an inline model call (no
    I/O) is answered right here, its turn decided in the same commit.

    ``decide_next=False`` only records the results and enqueues a tick after commit —
    two commits instead of one, the same outcome (the tests build in-between states
    with it).

    ``continuation``: the state the previous step of this worker left (its
    ``TickResult.continuation``), used instead of reading the run again. The write then
    applies only if the run's ``last_seq`` is still the one it carries — if anything
    else committed in between, nothing is written and the step is taken again from a
    locked read.
    """
    if continuation is not None:
        try:
            return _advance_once(
                run_id, results, eager_until, decide_next=decide_next, continuation=continuation
            )
        except (Stale, FenceFailed):
            logger.info("run %s: moved under an eager step, reading it again", run_id)
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
    continuation: Continuation | None = None,
) -> TickResult | None:
    from agentmaestro.runs import dispatch

    if continuation is not None and not results and hand_written():
        return _advance_from_memory(continuation, eager_until)
    with transaction.atomic():
        context = None
        if continuation is not None:
            loaded: Loaded | None = continuation.loaded
            context = continuation.context
        else:
            loaded = read_locked(run_id)
        if loaded is None:
            return None
        now = timezone.now()
        plan = Plan(loaded, now, eager=_eager(eager_until), context=context)
        plan.result.accepted = [plan.record(outcome) for outcome in results]
        commands: list[Command] = []
        try:
            if decide_next:
                commands = _decide_until_settled(plan, eager_until)
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
        plan.result.commands = commands
        if plan.changes:
            _write(plan)
        elif loaded.run.tick_failures:
            from agentmaestro.runs.models import AgentRun

            AgentRun.objects.filter(id=run_id).update(tick_failures=0)
    return plan.result


def _advance_from_memory(continuation: Continuation, eager_until: float | None) -> TickResult:
    """The next step of a run this worker's previous step left, planned from what that
    step knew (no read) and written by one statement in autocommit: it commits only if
    the run's last_seq is still the one the continuation carries (else Stale, and the
    caller takes the step again from a locked read). One round trip, one commit.
    """
    plan = Plan(
        continuation.loaded,
        timezone.now(),
        eager=_eager(eager_until),
        context=continuation.context,
    )
    plan.result.commands = _decide_until_settled(plan, eager_until)
    if plan.changes.finished_steps or plan.changes.changed_calls:
        # Fenced rows need the rollback a failed fence gets; never the case when a
        # worker's own previous step left everything finished, but not assumed.
        raise Stale(f"run {plan.run.id}: fenced rows in an eager step")
    if plan.changes:
        _write(plan)
    return plan.result


def _write(plan: Plan) -> None:
    """Write the plan's changes; announce them and start its activities after commit
    (at once when there is no transaction: the statement has committed)."""
    from agentmaestro.runs import dispatch
    from agentmaestro.runs.engine.activities import delta_message

    result = plan.result
    written = write_changes(plan.changes, plan.now)
    step_ids = {s.index: s.id for s in plan.changes.new_steps}
    result.model_steps = [step_ids[index] for index in result.model_steps]
    # An inline model's text deltas go out just before the step that holds its turn.
    deltas = [
        delta_message(plan.run.id, step.id, step.index, text)
        for step, texts in plan.deltas
        for text in texts
    ]
    announce_on_commit(written.workspace_id, written.status, written.events, before=deltas)
    if result.more:
        result.continuation = plan.continuation(written.last_seq)
    if result.model_steps or result.tool_calls:
        model_steps, tool_calls = result.model_steps, result.tool_calls
        transaction.on_commit(lambda: dispatch.start_activities(model_steps, tool_calls))


# A step applies at most this many decisions (a run of one model turn takes ~4); more
# means decide() and the plan disagree about what a command changes.
MAX_DECISIONS_PER_STEP = 32


def _decide_until_settled(plan: Plan, eager_until: float | None) -> list[Command]:
    """Apply decisions until decide() has nothing more to say, or the step must end.

    One decision at a time, each seeing what the previous ones changed: tool calls the
    step ran already (built-in tools, under eager continuation) are observed at once
    instead of after a wait, and an inline model call is answered right here — the same
    claim and fencing as an activity, but no commit, no broker hop, no second read.
    The step ends when the run waits on something (an activity, a terminal state), or
    before its next model turn once it has answered one (``TickResult.more``).
    """
    from agentmaestro.runs.engine import activities

    applied: list[Command] = []
    for _ in range(MAX_DECISIONS_PER_STEP):
        commands = decide(plan.state())
        if not commands:
            return applied
        for command in commands:
            plan.apply(command)
            applied.append(command)
            if plan.result.more:
                return applied
        while (inline := plan.take_inline_model()) is not None:
            plan.record(activities.answer_inline(inline, plan))
            plan.eager = _eager(eager_until)
    raise ImpossibleState(f"run {plan.run.id}: no settled state after {len(applied)} decisions")


def tick(run_id: uuid.UUID) -> TickResult | None:
    """Take the run's next decision; activities it starts go to the broker."""
    return advance(run_id)


def drive(
    run_id: uuid.UUID, results: tuple[ActivityResult, ...] = (), *, slice_ms: float | None = None
) -> TickResult | None:
    """:func:`advance`, then eager continuation: while a step ended only to commit one
    model turn before the next (``TickResult.more``), take the next step here, until the
    run waits on something slow or the time slice is used up (then a tick is enqueued).
    Claims, leases and fencing are exactly those of the broker path, so a worker that
    dies in the middle is recovered the same way.

    The slice starts after the first step, which always runs eagerly: on a busy worker
    (hundreds of threads sharing one interpreter) reaching the first decision alone can
    take longer than a slice, and handing the very next built-in tool to the broker then
    only adds load where there is already too much.
    """
    from agentmaestro.runs import dispatch

    budget = settings.CONFIG.eager_slice_ms if slice_ms is None else slice_ms
    if budget <= 0:
        return advance(run_id, results)
    outcome = advance(run_id, results, eager_until=math.inf)
    deadline = time.monotonic() + budget / 1000
    while outcome is not None and outcome.more:
        if time.monotonic() >= deadline:
            dispatch.enqueue_tick(run_id)  # the slice is used up: the broker carries on
            break
        outcome = advance(run_id, eager_until=deadline, continuation=outcome.continuation)
    return outcome
