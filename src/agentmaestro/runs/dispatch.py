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
    from agentmaestro.runs.tasks import model_call, tool_call

    for step_id in model_steps:
        model_call.apply_async(args=(step_id,), queue=ACTIVITIES_QUEUE)
    for call_id in tool_calls:
        tool_call.apply_async(args=(str(call_id),), queue=ACTIVITIES_QUEUE)
