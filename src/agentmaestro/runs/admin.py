"""Runs in the admin: read-only, because a run changes state only through its services.

The one change offered is an action that cancels runs through ``run_cancel``, so an
admin cancellation cancels open tool calls and records its events like any other.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest

from agentmaestro.common.errors import AppError
from agentmaestro.runs.models import AgentRun, AgentStep, RunEvent, ToolCall
from agentmaestro.runs.services.runs import run_cancel

if TYPE_CHECKING:
    _RunAdmin = admin.ModelAdmin[AgentRun]
    _RunInline = admin.TabularInline[Any, AgentRun]
else:  # the admin classes are not subscriptable at run time
    _RunAdmin = admin.ModelAdmin
    _RunInline = admin.TabularInline

SUMMARY_CHARS = 120


def _summary(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def acting_user(request: HttpRequest) -> AbstractBaseUser | None:
    user = request.user
    return user if isinstance(user, AbstractBaseUser) else None


class _ReadOnlyInline(_RunInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: AgentRun | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AgentRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AgentRun | None = None) -> bool:
        return False


class AgentStepInline(_ReadOnlyInline):
    model = AgentStep
    fields = ("index", "kind", "status", "payload_summary", "created_at", "finished_at")
    readonly_fields = fields
    ordering = ("index",)

    @admin.display(description="payload")
    def payload_summary(self, step: AgentStep) -> str:
        return _summary(step.payload)


class ToolCallInline(_ReadOnlyInline):
    model = ToolCall
    fk_name = "run"
    fields = (
        "tool_name",
        "status",
        "attempt",
        "arguments_summary",
        "result_summary",
        "created_at",
        "finished_at",
    )
    readonly_fields = fields
    ordering = ("created_at",)

    @admin.display(description="arguments")
    def arguments_summary(self, call: ToolCall) -> str:
        return _summary(call.arguments)

    @admin.display(description="result / error")
    def result_summary(self, call: ToolCall) -> str:
        return _summary(call.error if call.error is not None else call.result)


class RunEventInline(_ReadOnlyInline):
    model = RunEvent
    fields = ("seq", "type", "version", "payload_summary", "created_at")
    readonly_fields = fields
    ordering = ("seq",)
    verbose_name_plural = "events (in seq order)"

    @admin.display(description="payload")
    def payload_summary(self, event: RunEvent) -> str:
        return _summary(event.payload)


@admin.register(AgentRun)
class AgentRunAdmin(_RunAdmin):
    list_display = ("id", "workspace", "agent", "status", "created_at", "finished_at", "last_seq")
    list_filter = ("status", "agent", "workspace", "created_at")
    list_select_related = ("workspace", "agent", "agent__workspace")
    # The search is get_search_results below; a non-empty search_fields shows the box.
    search_fields = ("id",)
    search_help_text = "A run id (exact), or text in the run's input."
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    inlines = (AgentStepInline, ToolCallInline, RunEventInline)
    actions = ("cancel_runs",)
    readonly_fields = (
        "id",
        "workspace",
        "agent",
        "status",
        "input",
        "output",
        "error",
        "parent_run",
        "parent_tool_call",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "last_seq",
        "step_count",
        "tool_call_count",
        "input_tokens",
        "output_tokens",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AgentRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AgentRun | None = None) -> bool:
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        """Cancelling is a change of the run, so it needs the change permission of runs."""
        return request.user.has_perm("runs.change_agentrun")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AgentRun], search_term: str
    ) -> tuple[QuerySet[AgentRun], bool]:
        """A UUID matches the run id exactly; anything else is searched in the input's text.

        ``input__icontains`` would compare against the JSON-encoded term on PostgreSQL
        (jsonb), so the input is cast to text first: the same query on both databases.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(id=uuid.UUID(term)), False
        except ValueError:
            pass
        matches = queryset.annotate(input_text=Cast("input", TextField())).filter(
            input_text__icontains=term
        )
        return matches, False

    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[AgentRun]) -> None:
        cancelled = 0
        for run_id in queryset.values_list("id", flat=True):
            try:
                run_cancel(run_id=run_id, by=acting_user(request))
            except AppError as error:
                self.message_user(
                    request, f"Run {run_id} was not cancelled: {error.message}", messages.ERROR
                )
            else:
                cancelled += 1
        if cancelled:
            self.message_user(
                request,
                f"Cancelled {cancelled} run{'s' if cancelled != 1 else ''}.",
                messages.SUCCESS,
            )
