from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from agentmaestro.agents.models import Agent
from agentmaestro.runs.states import (
    TERMINAL_STATUSES,
    RunStatus,
    StepKind,
    StepStatus,
    ToolCallStatus,
)
from agentmaestro.workspaces.models import Workspace

_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)  # sorted: stable migrations


def _choices(
    enum: type[RunStatus] | type[StepKind] | type[StepStatus] | type[ToolCallStatus],
) -> list[tuple[str, str]]:
    return [(member.value, member.value.replace("_", " ").capitalize()) for member in enum]


class AgentRun(models.Model):
    Status = RunStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="runs")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=32, choices=_choices(RunStatus), default=RunStatus.PENDING)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    # {"code": "<machine-readable reason>", "message": "..."} when FAILED or CANCELLED.
    error = models.JSONField(null=True, blank=True)
    parent_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    parent_tool_call = models.ForeignKey(
        "ToolCall", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The seq of the last event appended; the next event gets last_seq + 1.
    last_seq = models.BigIntegerField(default=0)
    step_count = models.PositiveIntegerField(default=0)
    tool_call_count = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    # Consecutive ticks that raised; past a limit the reconciler fails the run instead
    # of retrying forever (runs/services/reconciler.py).
    tick_failures = models.PositiveIntegerField(default=0)
    # The client's Idempotency-Key of the API request that created the run: a retry with
    # the same key in the same workspace gets this run back instead of a new one.
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="run_ws_created"),
            models.Index(fields=["workspace", "status"], name="run_ws_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in RunStatus]), name="run_status_valid"
            ),
            models.CheckConstraint(condition=models.Q(last_seq__gte=0), name="run_last_seq_gte_0"),
            # Race-safe idempotency: two requests with one key insert one row; the loser's
            # INSERT fails here and it returns the winner's run. NULLs never collide.
            models.UniqueConstraint(
                fields=["workspace", "idempotency_key"], name="run_unique_idempotency_key"
            ),
            # A run is finished exactly when it is in a terminal status.
            models.CheckConstraint(
                condition=(
                    models.Q(status__in=_TERMINAL, finished_at__isnull=False)
                    | (~models.Q(status__in=_TERMINAL) & models.Q(finished_at__isnull=True))
                ),
                name="run_finished_iff_terminal",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"


class AgentStep(models.Model):
    Kind = StepKind
    Status = StepStatus

    # No separate index on run_id (the (run, index) unique index serves it) and no
    # database foreign key: see "Hot-path tables" in docs/engine.md.
    run = models.ForeignKey(
        AgentRun,
        on_delete=models.CASCADE,
        related_name="steps",
        db_index=False,
        db_constraint=False,
    )
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=_choices(StepKind))
    status = models.CharField(
        max_length=16, choices=_choices(StepStatus), default=StepStatus.STARTED
    )
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # MODEL_CALL steps are activities: claimed with attempt as fencing token, leased.
    attempt = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            # Also the index that serves "the steps of a run".
            models.UniqueConstraint(fields=["run", "index"], name="step_unique_index"),
            models.CheckConstraint(condition=models.Q(index__gte=1), name="step_index_gte_1"),
            models.CheckConstraint(
                condition=models.Q(kind__in=[k.value for k in StepKind]), name="step_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in StepStatus]),
                name="step_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"step {self.index} {self.kind}"


class EventPayloadField(models.JSONField):
    """An event's payload, kept as the JSON text it was written in (PostgreSQL ``json``,
    not ``jsonb``).

    The log is appended far more than it is read and never queried inside a payload:
    ``json`` stores the compact text as sent (jsonb's binary form of the engine's
    payloads measured 11-20% larger) and checks it without building a binary tree.
    Elsewhere as JSONField.
    """

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        # psycopg decodes ``json`` itself (Django only registers a text loader for jsonb).
        if not isinstance(value, str):
            return value
        return super().from_db_value(value, expression, connection)


class RunEvent(models.Model):
    """One immutable entry of a run's log. ``seq`` is gapless per run, starting at 1."""

    # The key is (run, seq), an event's natural identity: no surrogate id, so one index
    # per event (it serves every lookup by run) and no id column. A second index
    # measurably slows the append path (see bench/events.py) and costs ~30 B per event.
    # No database foreign key either: every event is inserted by the statement that bumps
    # its run's last_seq (events/store.py, engine/store/), so its run exists and is
    # locked, and a deferred check per event at every commit is pure cost on the hottest
    # table. Deleting a run still deletes its events (Django's CASCADE).
    pk = models.CompositePrimaryKey("run_id", "seq")
    run = models.ForeignKey(
        AgentRun,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    seq = models.BigIntegerField()
    type = models.CharField(max_length=64)
    version = models.PositiveSmallIntegerField()
    payload = EventPayloadField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="event_seq_gte_1"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}"


class ToolCall(models.Model):
    Status = ToolCallStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by run only (the engine finds a turn's calls among its run's), and no
    # database foreign keys: see "Hot-path tables" in docs/engine.md.
    run = models.ForeignKey(
        AgentRun, on_delete=models.CASCADE, related_name="tool_calls", db_constraint=False
    )
    step = models.ForeignKey(
        AgentStep,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tool_calls",
        db_index=False,
        db_constraint=False,
    )
    tool = models.ForeignKey(
        "tools.ToolDefinition",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    # The name the model asked for, kept even when no such tool exists.
    tool_name = models.CharField(max_length=128)
    # The id the model gave the call, echoed back with the result.
    provider_call_id = models.CharField(max_length=128, blank=True)
    # Its place among the calls of one model turn: observations keep the model's order.
    position = models.PositiveSmallIntegerField(default=0)
    arguments = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=24, choices=_choices(ToolCallStatus), default=ToolCallStatus.PENDING
    )
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # Fencing token: an activity's claim and its result both name the attempt they belong to.
    attempt = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in ToolCallStatus]),
                name="toolcall_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        """What an executor keys a side effect by: run id and call id. Derived, not
        stored: the call id is unique already, so a stored copy (and its unique index)
        would only repeat it."""
        return idempotency_key(self.run_id, self.id)


def idempotency_key(run_id: uuid.UUID | str, call_id: uuid.UUID | str) -> str:
    return f"{run_id}:{call_id}"


class Artifact(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="artifacts")
    tool_call = models.ForeignKey(
        ToolCall, null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts"
    )
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, default="application/octet-stream")
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    content = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="artifact_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name
