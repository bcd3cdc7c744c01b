"""Run status transitions: the legal-move table applied, and the event that records it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from agentmaestro.common.errors import Conflict, NotFound
from agentmaestro.common.time import iso
from agentmaestro.runs.events.store import append_event
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.states import RUN_TRANSITIONS, RunStatus


class IllegalTransition(Conflict):
    code = "illegal_transition"


@dataclass(frozen=True)
class TransitionPlan:
    fields: dict[str, Any]
    event_payload: dict[str, Any]


def plan_transition(
    *,
    from_status: RunStatus,
    to_status: RunStatus,
    started_at: datetime | None,
    at: datetime,
    reason: str | None = None,
    output: Any = None,
    error: dict[str, str] | None = None,
) -> TransitionPlan:
    """The row fields and event payload of one transition; raises if it is illegal. Pure."""
    if to_status not in RUN_TRANSITIONS[from_status]:
        raise IllegalTransition(
            f"A run cannot go from {from_status} to {to_status}.",
            details={
                "from_status": from_status.value,
                "to_status": to_status.value,
                "allowed": sorted(s.value for s in RUN_TRANSITIONS[from_status]),
            },
        )
    fields: dict[str, Any] = {"status": to_status.value}
    if to_status is RunStatus.RUNNING and started_at is None:
        fields["started_at"] = at
    if to_status.is_terminal:
        fields["finished_at"] = at
        fields["output"] = output
        fields["error"] = error
    payload: dict[str, Any] = {
        "from_status": from_status.value,
        "to_status": to_status.value,
        "at": iso(at),
        "reason": reason,
        "output": output,
        "error": error,
    }
    return TransitionPlan(fields=fields, event_payload=payload)


def run_transition(
    *,
    run_id: uuid.UUID,
    to_status: RunStatus,
    reason: str | None = None,
    output: Any = None,
    error: dict[str, str] | None = None,
) -> AgentRun:
    """Move a run to ``to_status`` under its row lock, recording ``run.status_changed``.

    An illegal move raises :class:`IllegalTransition` and writes nothing.
    """
    with transaction.atomic():
        run = AgentRun.objects.select_for_update().filter(id=run_id).first()
        if run is None:
            raise NotFound("No such run.", details={"run_id": str(run_id)})
        plan = plan_transition(
            from_status=RunStatus(run.status),
            to_status=to_status,
            started_at=run.started_at,
            at=timezone.now(),
            reason=reason,
            output=output,
            error=error,
        )
        AgentRun.objects.filter(id=run_id).update(**plan.fields)
        for name, value in plan.fields.items():
            setattr(run, name, value)
        event = append_event(run.id, "run.status_changed", plan.event_payload)
        run.last_seq = event.seq
    return run
