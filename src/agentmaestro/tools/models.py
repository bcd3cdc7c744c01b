from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from jsonschema import SchemaError
from jsonschema.validators import validator_for

from agentmaestro.workspaces.models import Workspace


class RiskLevel(models.TextChoices):
    SAFE = "SAFE"
    ELEVATED = "ELEVATED"
    DANGEROUS = "DANGEROUS"


class ExecutorKind(models.TextChoices):
    BUILTIN = "builtin"
    TOOLRUNNER = "toolrunner"
    SUBAGENT = "subagent"


def validate_json_schema(value: object) -> None:
    if not isinstance(value, dict):
        raise ValidationError("The argument schema must be a JSON object.")
    try:
        validator_for(value).check_schema(value)
    except SchemaError as exc:
        raise ValidationError(f"Not a valid JSON Schema: {exc.message}") from exc


class ToolDefinition(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    args_schema = models.JSONField(default=dict, validators=[validate_json_schema])
    risk_level = models.CharField(max_length=16, choices=RiskLevel.choices, default=RiskLevel.SAFE)
    executor = models.CharField(max_length=16, choices=ExecutorKind.choices)
    # For executor=subagent: the agent the call delegates to.
    target_agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    timeout_seconds = models.PositiveIntegerField(default=30)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["workspace", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="tool_unique_name"),
            models.CheckConstraint(
                condition=models.Q(name__regex=r"^[A-Za-z0-9_-]{1,64}$"), name="tool_name_format"
            ),
            models.CheckConstraint(
                condition=models.Q(risk_level__in=RiskLevel.values), name="tool_risk_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(executor__in=ExecutorKind.values), name="tool_executor_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gt=0), name="tool_timeout_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ToolExecution(models.Model):
    """The executor's record of a side effect done, keyed by the call's idempotency key.

    A retried or re-delivered tool call finds its record and gets the stored outcome
    back instead of running again.
    """

    idempotency_key = models.CharField(max_length=100, primary_key=True)
    tool_name = models.CharField(max_length=64)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.idempotency_key
