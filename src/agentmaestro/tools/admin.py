from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from agentmaestro.tools.models import ToolDefinition

if TYPE_CHECKING:
    _ToolAdmin = admin.ModelAdmin[ToolDefinition]
else:  # the admin classes are not subscriptable at run time
    _ToolAdmin = admin.ModelAdmin


@admin.register(ToolDefinition)
class ToolDefinitionAdmin(_ToolAdmin):
    """Tools are edited through the model form, whose full_clean() runs the args_schema
    field's validator: a document that is not a JSON Schema is refused with its reason."""

    list_display = ("name", "workspace", "executor", "risk_level", "timeout_seconds")
    list_filter = ("workspace", "executor", "risk_level")
    list_select_related = ("workspace",)
    search_fields = ("name", "description")
    readonly_fields = ("id", "created_at")
    autocomplete_fields = ("target_agent",)
    fields = (
        "id",
        "workspace",
        "name",
        "description",
        "args_schema",
        "risk_level",
        "executor",
        "target_agent",
        "timeout_seconds",
        "created_at",
    )
