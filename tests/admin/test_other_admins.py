"""API tokens, tools and workspaces in the admin."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentmaestro.accounts.models import ApiToken
from agentmaestro.accounts.services import api_token_authenticate, api_token_create
from agentmaestro.tools.models import ToolDefinition
from agentmaestro.workspaces.models import Role, WorkspaceMembership
from tests.factories import Personas

pytestmark = pytest.mark.django_db

TOKENS = reverse("admin:accounts_apitoken_changelist")


def test_the_token_list_shows_prefix_and_owner_but_never_the_token(
    admin_client: Client, personas: Personas
) -> None:
    token, raw = api_token_create(user=personas.member, name="ci")

    page = admin_client.get(TOKENS)

    content = page.content.decode()
    assert page.status_code == 200
    assert token.prefix in content
    assert personas.member.username in content
    assert raw not in content
    assert token.digest not in content
    assert "agentmaestro createtoken USERNAME" in content


def test_tokens_cannot_be_created_or_edited_in_the_admin(
    admin_client: Client, personas: Personas
) -> None:
    token, _ = api_token_create(user=personas.member)
    change = reverse("admin:accounts_apitoken_change", args=[token.pk])

    assert admin_client.get(reverse("admin:accounts_apitoken_add")).status_code == 403
    assert admin_client.post(change, {"name": "renamed"}).status_code == 403
    assert b'name="_save"' not in admin_client.get(change).content


def test_the_revoke_action_revokes_tokens_and_keeps_earlier_revocations(
    admin_client: Client, personas: Personas
) -> None:
    live, live_raw = api_token_create(user=personas.member)
    old, _ = api_token_create(user=personas.viewer)
    long_ago = timezone.now() - timedelta(days=30)
    ApiToken.objects.filter(pk=old.pk).update(revoked_at=long_ago)
    assert api_token_authenticate(live_raw) is not None

    response = admin_client.post(
        TOKENS,
        {"action": "revoke_tokens", "_selected_action": [str(live.pk), str(old.pk)]},
        follow=True,
    )

    live.refresh_from_db()
    old.refresh_from_db()
    assert live.revoked_at is not None
    assert old.revoked_at == long_ago
    assert api_token_authenticate(live_raw) is None
    assert [m.message for m in get_messages(response.wsgi_request)] == [
        "Revoked 1 token(s).",
        "1 token(s) were already revoked.",
    ]


def test_the_revoked_filter_lists_active_or_revoked_tokens(
    admin_client: Client, personas: Personas
) -> None:
    active, _ = api_token_create(user=personas.member)
    revoked, _ = api_token_create(user=personas.member)
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    def listed(value: str) -> set[int]:
        response = admin_client.get(TOKENS, {"revoked": value})
        return {token.pk for token in response.context["cl"].result_list}

    assert listed("no") == {active.pk}
    assert listed("yes") == {revoked.pk}


def tool_form(personas: Personas, schema: Any) -> dict[str, str]:
    return {
        "workspace": str(personas.workspace.id),
        "name": "search",
        "description": "",
        "args_schema": json.dumps(schema),
        "risk_level": "SAFE",
        "executor": "builtin",
        "target_agent": "",
        "timeout_seconds": "30",
    }


def test_a_tool_whose_argument_schema_is_not_a_json_schema_is_refused(
    admin_client: Client, personas: Personas
) -> None:
    response = admin_client.post(
        reverse("admin:tools_tooldefinition_add"),
        tool_form(personas, {"type": "no-such-type"}),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "args_schema" in errors
    assert "Not a valid JSON Schema" in errors["args_schema"][0]
    assert not ToolDefinition.objects.exists()


def test_a_tool_with_a_valid_argument_schema_is_saved(
    admin_client: Client, personas: Personas
) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    response = admin_client.post(
        reverse("admin:tools_tooldefinition_add"), tool_form(personas, schema)
    )

    assert response.status_code == 302
    assert ToolDefinition.objects.get().args_schema == schema


def membership_form(personas: Personas, role: Role) -> dict[str, str]:
    """The workspace change form, with the owner's membership set to ``role``."""
    membership = WorkspaceMembership.objects.get(workspace=personas.workspace, user=personas.owner)
    others = WorkspaceMembership.objects.filter(workspace=personas.workspace).exclude(
        pk=membership.pk
    )
    rows = [(membership, role), *((m, Role(m.role)) for m in others)]
    data = {
        "slug": personas.workspace.slug,
        "name": personas.workspace.name,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(len(rows)),
        "memberships-MIN_NUM_FORMS": "1",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, (row, row_role) in enumerate(rows):
        data |= {
            f"memberships-{i}-id": str(row.pk),
            f"memberships-{i}-workspace": str(personas.workspace.id),
            f"memberships-{i}-user": str(row.user_id),
            f"memberships-{i}-role": row_role.value,
        }
    return data


def test_a_workspace_cannot_be_left_without_an_owner(
    admin_client: Client, personas: Personas
) -> None:
    url = reverse("admin:workspaces_workspace_change", args=[personas.workspace.id])

    refused = admin_client.post(url, membership_form(personas, Role.ADMIN))
    accepted = admin_client.post(url, membership_form(personas, Role.OWNER))

    assert refused.status_code == 200
    assert "A workspace needs at least one owner." in refused.content.decode()
    assert accepted.status_code == 302
    membership = WorkspaceMembership.objects.get(workspace=personas.workspace, user=personas.owner)
    assert membership.role == Role.OWNER
