from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from agentmaestro.agents.models import Agent

if TYPE_CHECKING:
    _AgentAdmin = admin.ModelAdmin[Agent]
else:  # the admin classes are not subscriptable at run time
    _AgentAdmin = admin.ModelAdmin


@admin.register(Agent)
class AgentAdmin(_AgentAdmin):
    list_display = ("slug", "name", "workspace", "max_steps", "updated_at")
    list_filter = ("workspace",)
    list_select_related = ("workspace",)
    search_fields = ("slug", "name", "description")
    readonly_fields = ("id", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("id", "workspace", "slug", "name", "description")}),
        ("Model", {"fields": ("system_prompt", "model_settings", "tool_policy")}),
        ("Budgets", {"fields": ("max_steps", "max_tool_calls", "max_tokens", "max_wall_seconds")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )
