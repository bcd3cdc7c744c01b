"""The demo data of ``agentmaestro seeddemo`` and of ``agentmaestro standalone``'s first start.

Seeding is idempotent: each object is looked up by its natural key and created only when
missing, so a second call creates nothing. Secrets (the demo password, the demo API
token) exist in plaintext only in the result of the call that created them; nothing
can show them again.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction

from agentmaestro.accounts.models import ApiToken
from agentmaestro.accounts.services import api_token_create
from agentmaestro.agents.models import Agent
from agentmaestro.config import Config
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.services.runs import run_add_note, run_create, run_record_usage
from agentmaestro.runs.services.steps import step_append, tool_call_create, tool_call_update
from agentmaestro.runs.services.transitions import run_transition
from agentmaestro.runs.states import RunStatus, StepKind, StepStatus, ToolCallStatus
from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership
from agentmaestro.workspaces.services import workspace_create

DEMO_USERNAME = "demo"
DEMO_WORKSPACE_SLUG = "demo"
DEMO_AGENT_SLUG = "demo-agent"
DEMO_TOKEN_NAME = "demo"  # noqa: S105 — the token's label, not a secret


@dataclass
class DemoSeed:
    user: AbstractUser
    workspace: Workspace
    agent: Agent
    run: AgentRun
    # Plaintext secrets, set only by the call that created them.
    password: str | None = None
    token: str | None = None
    created: list[str] = field(default_factory=list)


def seed_demo() -> DemoSeed:
    """Create whatever of the demo data is missing; see the module docstring."""
    with transaction.atomic():
        created: list[str] = []
        user, password = _demo_user(created)
        workspace = _demo_workspace(user, created)
        agent = _demo_agent(workspace, created)
        token = _demo_token(user, created)
        run = _demo_run(agent, user, created)
    return DemoSeed(
        user=user,
        workspace=workspace,
        agent=agent,
        run=run,
        password=password,
        token=token,
        created=created,
    )


def _demo_user(created: list[str]) -> tuple[AbstractUser, str | None]:
    user_model = get_user_model()
    existing = user_model.objects.filter(username=DEMO_USERNAME).first()
    if existing is not None:
        return existing, None
    password = secrets.token_urlsafe(12)
    # Staff and superuser, so the demo login also opens the admin.
    user = user_model.objects.create_superuser(username=DEMO_USERNAME, email="", password=password)
    created.append(f"user {DEMO_USERNAME} (staff, superuser)")
    return user, password


def _demo_workspace(user: AbstractUser, created: list[str]) -> Workspace:
    workspace = Workspace.objects.filter(slug=DEMO_WORKSPACE_SLUG).first()
    if workspace is None:
        created.append(f"workspace {DEMO_WORKSPACE_SLUG} (owner {DEMO_USERNAME})")
        return workspace_create(slug=DEMO_WORKSPACE_SLUG, name="Demo", owner=user)
    # The workspace may predate the user (deleted and re-seeded): the demo user must see it.
    _, joined = WorkspaceMembership.objects.get_or_create(
        workspace=workspace, user_id=user.pk, defaults={"role": Role.OWNER}
    )
    if joined:
        created.append(f"membership of {DEMO_USERNAME} in {DEMO_WORKSPACE_SLUG} (owner)")
    return workspace


def _demo_agent(workspace: Workspace, created: list[str]) -> Agent:
    agent, made = Agent.objects.get_or_create(
        workspace=workspace,
        slug=DEMO_AGENT_SLUG,
        defaults={
            "name": "Demo agent",
            "description": "A scripted agent that needs no model provider or API key.",
            "model_settings": {"provider": "scripted"},
        },
    )
    if made:
        created.append(f"agent {workspace.slug}/{DEMO_AGENT_SLUG}")
    return agent


def _demo_token(user: AbstractUser, created: list[str]) -> str | None:
    # A revoked demo token counts too: re-seeding must not quietly re-issue a credential
    # that someone revoked.
    if ApiToken.objects.filter(user_id=user.pk, name=DEMO_TOKEN_NAME).exists():
        return None
    _, raw = api_token_create(user=user, name=DEMO_TOKEN_NAME)
    created.append(f"API token {DEMO_TOKEN_NAME!r} for {DEMO_USERNAME}")
    return raw


def _demo_run(agent: Agent, user: AbstractUser, created: list[str]) -> AgentRun:
    """The oldest run of the demo agent, or a new one with a short history to look at.

    The history is written through the same services the engine uses, so its events fold
    to its snapshot like any other run's. It is left RUNNING, so the stream page has a
    run to add notes to and to cancel.
    """
    existing = AgentRun.objects.filter(agent=agent).order_by("created_at").first()
    if existing is not None:
        return existing
    run = run_create(
        agent=agent,
        input={"prompt": "What is the weather in Lisbon, in one sentence?"},
        created_by=user,
    )
    run_transition(run_id=run.id, to_status=RunStatus.RUNNING, reason="demo")
    step = step_append(
        run_id=run.id,
        kind=StepKind.MODEL_CALL,
        status=StepStatus.COMPLETED,
        payload={"text": "I will look the weather up.", "tool_calls": ["get_weather"]},
    )
    run_record_usage(run_id=run.id, input_tokens=42, output_tokens=12)
    call = tool_call_create(
        run_id=run.id,
        step=step,
        tool_name="get_weather",
        arguments={"city": "Lisbon"},
        provider_call_id="call_demo_1",
    )
    tool_call_update(call_id=call.id, status=ToolCallStatus.RUNNING, attempt=1)
    tool_call_update(
        call_id=call.id,
        status=ToolCallStatus.SUCCEEDED,
        result={"summary": "Sunny, 21 °C, light wind from the north."},
    )
    step_append(
        run_id=run.id,
        kind=StepKind.OBSERVATION,
        status=StepStatus.COMPLETED,
        payload={"tool_call_id": str(call.id), "text": "Sunny, 21 °C, light wind."},
    )
    run_add_note(
        run_id=run.id,
        message="Seeded demo run: add a note or cancel it from the stream page.",
        source="seeddemo",
    )
    created.append(f"demo run {run.id}")
    run.refresh_from_db()
    return run


def default_data_dir() -> Path:
    """The data directory when neither --data-dir nor AGENTMAESTRO_DATA_DIR names one."""
    default: Path = Config.model_fields["data_dir"].default
    return default.expanduser().resolve()


def command_prefix() -> str:
    """How to call ``agentmaestro`` so it finds this process's data (the standalone stack).

    A data directory other than the default one in the current directory has to be
    named again, or the command would open (and create) another database.
    """
    config = settings.CONFIG
    if config.standalone_database and config.resolved_data_dir != default_data_dir():
        return f"AGENTMAESTRO_DATA_DIR={shlex.quote(str(config.resolved_data_dir))} agentmaestro"
    return "agentmaestro"


def demo_credentials(seed: DemoSeed) -> list[tuple[str, str]]:
    """(label, text) lines about the demo credentials: the secrets once, then how to reset."""
    cmd = command_prefix()
    if seed.password is not None:
        login = f"{DEMO_USERNAME} / {seed.password}   (shown only now: store it)"
    else:
        login = (
            f"{DEMO_USERNAME} (password printed at first start; to set a new one: "
            f"{cmd} changepassword {DEMO_USERNAME})"
        )
    if seed.token is not None:
        token = f"{seed.token}   (shown only now: store it)"
    else:
        token = f"printed at first start; for a new one: {cmd} createtoken {DEMO_USERNAME}"
    return [("Login", login), ("API token", token)]
