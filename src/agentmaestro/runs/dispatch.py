"""Enqueue engine work on the right Celery queue. Call only after commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

TICKS_QUEUE = "ticks"
ACTIVITIES_QUEUE = "activities"


def enqueue_tick(run_id: uuid.UUID | str) -> None:
    from agentmaestro.runs.tasks import run_tick

    run_tick.apply_async(args=(str(run_id),), queue=TICKS_QUEUE)


def start_activities(model_steps: Iterable[int], tool_calls: Iterable[uuid.UUID]) -> None:
    """Send each activity to the broker, except model calls that this process's model-call
    executor has room for (a worker on the activities queue: runs/engine/executor.py).

    Those skip the broker hop and the Celery task; they are claimed and fenced exactly
    as the task would, and a call lost with its process is re-sent by the reconciler.
    """
    from agentmaestro.runs.engine import executor
    from agentmaestro.runs.tasks import model_call, tool_call

    local = executor.current()
    for step_id in model_steps:
        if local is not None and local.submit(step_id):
            continue
        model_call.apply_async(args=(step_id,), queue=ACTIVITIES_QUEUE)
    for call_id in tool_calls:
        tool_call.apply_async(args=(str(call_id),), queue=ACTIVITIES_QUEUE)
