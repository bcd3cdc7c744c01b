"""Find work that stopped moving and start it again. Run periodically (celery beat).

The broker is not the truth: a worker killed mid-task, a Redis restart or a standalone
restart can lose queued messages. Everything needed is in the database, and every
tick and claim is idempotent, so re-enqueueing too much is harmless and too little is
impossible once this has run.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agentmaestro.runs import dispatch
from agentmaestro.runs.events.store import append_events
from agentmaestro.runs.events.types import NewEvent
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent, ToolCall
from agentmaestro.runs.services.payloads import tool_call_updated_payload
from agentmaestro.runs.services.transitions import run_transition
from agentmaestro.runs.states import (
    TERMINAL_STATUSES,
    RunStatus,
    StepKind,
    StepStatus,
    ToolCallStatus,
)

logger = logging.getLogger(__name__)

MAX_TICK_FAILURES = 5


@dataclass
class ReconcileReport:
    ticks: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    failed_runs: int = 0


def reconcile(now: datetime | None = None, *, everything: bool = False) -> ReconcileReport:
    """Re-enqueue stalled work. ``everything`` skips the grace period (process start)."""
    now = now or timezone.now()
    grace = timedelta(seconds=0 if everything else settings.CONFIG.stall_seconds)
    report = ReconcileReport()
    active = AgentRun.objects.exclude(status__in=[s.value for s in TERMINAL_STATUSES])

    for run_id in active.filter(tick_failures__gte=MAX_TICK_FAILURES).values_list("id", flat=True):
        run_transition(
            run_id=run_id,
            to_status=RunStatus.FAILED,
            reason="tick_failed",
            error={"code": "tick_failed", "message": "The run failed to advance repeatedly."},
        )
        report.failed_runs += 1

    # Model calls: expired leases, and calls never claimed (their message was lost).
    stale_steps = AgentStep.objects.filter(
        kind=StepKind.MODEL_CALL, status=StepStatus.STARTED, run__in=active
    ).filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, created_at__lt=now - grace)
    )
    step_ids = list(stale_steps.values_list("id", flat=True))
    dispatch.start_activities(step_ids, [])
    report.model_calls = len(step_ids)

    # Tool calls: a RUNNING call whose lease expired goes back to QUEUED (an event),
    # then, like calls queued too long, is enqueued again.
    for call_id in ToolCall.objects.filter(
        status=ToolCallStatus.RUNNING, lease_expires_at__lt=now, run__in=active
    ).values_list("id", flat=True):
        _requeue_tool_call(call_id, now)
    call_ids = list(
        ToolCall.objects.filter(
            status=ToolCallStatus.QUEUED, created_at__lt=now - grace, run__in=active
        ).values_list("id", flat=True)
    )
    dispatch.start_activities([], call_ids)
    report.tool_calls = len(call_ids)

    # Runs whose log has not moved for the grace period get a tick; a tick with
    # nothing to do is a no-op.
    for run_id, last_seq in active.values_list("id", "last_seq"):
        last = (
            RunEvent.objects.filter(run_id=run_id, seq=last_seq)
            .values_list("created_at", flat=True)
            .first()
        )
        if last is None or last < now - grace:
            dispatch.enqueue_tick(run_id)
            report.ticks += 1
    if report.ticks or report.model_calls or report.tool_calls or report.failed_runs:
        logger.info("reconciled: %s", report)
    return report


def _requeue_tool_call(call_id: uuid.UUID, now: datetime) -> None:
    with transaction.atomic():
        run_id = ToolCall.objects.filter(id=call_id).values_list("run_id", flat=True).first()
        if run_id is None:
            return
        if AgentRun.objects.select_for_update(skip_locked=True).filter(id=run_id).first() is None:
            return  # a tick or activity holds the run: look again next pass
        call = ToolCall.objects.filter(
            id=call_id, status=ToolCallStatus.RUNNING, lease_expires_at__lt=now
        ).first()
        if call is None:
            return
        call.status = ToolCallStatus.QUEUED
        call.lease_expires_at = None
        call.save(update_fields=["status", "lease_expires_at"])
        append_events(run_id, [NewEvent("tool_call.updated", tool_call_updated_payload(call))])
