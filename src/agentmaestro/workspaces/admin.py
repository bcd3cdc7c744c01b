from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership

if TYPE_CHECKING:
    _WorkspaceAdmin = admin.ModelAdmin[Workspace]
    _MembershipInline = admin.TabularInline[WorkspaceMembership, Workspace]
    _MembershipFormSetBase = BaseInlineFormSet[WorkspaceMembership, Workspace, Any]
else:  # the admin classes are not subscriptable at run time
    _WorkspaceAdmin = admin.ModelAdmin
    _MembershipInline = admin.TabularInline
    _MembershipFormSetBase = BaseInlineFormSet


class MembershipFormSet(_MembershipFormSetBase):
    def clean(self) -> None:
        """A workspace keeps at least one owner: only owners can manage its members."""
        super().clean()
        roles = [
            form.cleaned_data.get("role")
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        if Role.OWNER not in roles:
            raise ValidationError("A workspace needs at least one owner.")


class MembershipInline(_MembershipInline):
    model = WorkspaceMembership
    formset = MembershipFormSet
    extra = 0
    min_num = 1
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


@admin.register(Workspace)
class WorkspaceAdmin(_WorkspaceAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    readonly_fields = ("id", "created_at")
    fields = ("id", "slug", "name", "created_at")
    inlines = (MembershipInline,)
