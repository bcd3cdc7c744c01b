from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from agentmaestro.workspaces.models import Workspace


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="agents")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    system_prompt = models.TextField(blank=True)
    # {"provider": "scripted" | "openai" | "anthropic", "model": "...", ...provider options}
    model_settings = models.JSONField(default=dict, blank=True)
    # {"<tool name>": {"mode": "allow" | "approve" | "deny", "approver_role": "admin"}}
    tool_policy = models.JSONField(default=dict, blank=True)
    max_steps = models.PositiveIntegerField(default=50)
    max_tool_calls = models.PositiveIntegerField(default=50)
    max_tokens = models.PositiveIntegerField(default=200_000)
    max_wall_seconds = models.PositiveIntegerField(default=3600)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "slug"], name="agent_unique_slug"),
            models.CheckConstraint(
                condition=models.Q(max_steps__gt=0)
                & models.Q(max_tool_calls__gte=0)
                & models.Q(max_tokens__gt=0)
                & models.Q(max_wall_seconds__gt=0),
                name="agent_budgets_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workspace.slug}/{self.slug}"
