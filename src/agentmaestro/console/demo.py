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
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction

from agentmaestro.accounts.models import ApiToken
from agentmaestro.accounts.services import api_token_create
from agentmaestro.agents.models import Agent
from agentmaestro.config import Config
from agentmaestro.runs import dispatch
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.services.runs import run_cancel, run_create
from agentmaestro.runs.states import TERMINAL_STATUSES
from agentmaestro.tools.services import builtin_tools_install
from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership
from agentmaestro.workspaces.services import workspace_create

DEMO_USERNAME = "demo"
DEMO_WORKSPACE_SLUG = "demo"
DEMO_AGENT_SLUG = "demo-agent"
DEMO_TOKEN_NAME = "demo"  # noqa: S105 — the token's label, not a secret
DEMO_TOOLS = ("calculator", "current_time", "echo")
DEMO_PROMPT = "What is 6 * 7, what is that divided by 6, and what time is it?"
DEMO_AGENT_DESCRIPTION = (
    "A scripted agent that needs no model provider or API key: two model turns with two "
    "parallel tool calls each (calculator, current_time, echo), then a final answer."
)
# Each model turn takes MODEL_TURN_MS, so someone watching the stream page sees the run
# move; the tools are the built-in ones, which run in the worker.
MODEL_TURN_MS = 800
DEMO_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "I will compute 6 * 7 and look at the clock at the same time.",
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "6 * 7"}},
            {"name": "current_time", "arguments": {"timezone": "UTC"}},
        ],
        "delay_ms": MODEL_TURN_MS,
    },
    {
        "text": "6 * 7 = 42. Now 42 / 6, and a note for the record.",
        "tool_calls": [
            {"name": "calculator", "arguments": {"expression": "42 / 6"}},
            {"name": "echo", "arguments": {"value": "6 * 7 = 42"}},
        ],
        "delay_ms": MODEL_TURN_MS,
    },
    {
        "text": (
            "6 * 7 = 42, and 42 / 6 = 7; the current time is in the current_time result "
            "above. (A scripted answer: the demo agent calls no model.)"
        ),
        "delay_ms": MODEL_TURN_MS,
    },
]


# More demo agents, each showing one behaviour of the engine (scripted: no provider).
FLAKY_AGENT_SLUG = "flaky-tool"
FLAKY_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "Splitting the bill: 120 among the guests.",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "120 / 0"}}],
        "delay_ms": MODEL_TURN_MS,
    },
    {
        "text": "The tool refused a division by zero: there are 4 guests, so 120 / 4.",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "120 / 4"}}],
        "delay_ms": MODEL_TURN_MS,
    },
    {"text": "Each of the 4 guests pays 30.", "delay_ms": MODEL_TURN_MS},
]
BUDGET_AGENT_SLUG = "over-budget"
BUDGET_MAX_TOOL_CALLS = 3
BUDGET_SCRIPT: list[dict[str, Any]] = [
    {
        "text": f"Counting, step {i + 1}.",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": f"{i} + 1"}}],
        "delay_ms": MODEL_TURN_MS // 2,
    }
    for i in range(10)
]
ASSISTANT_AGENT_SLUG = "assistant"
DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


@dataclass(frozen=True)
class DemoAgent:
    slug: str
    name: str
    description: str
    model_settings: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)


def demo_agents(config: Config) -> list[DemoAgent]:
    """The demo agents: the scripted ones always, ``assistant`` when a provider is set."""
    agents = [
        DemoAgent(
            DEMO_AGENT_SLUG,
            "Demo agent",
            DEMO_AGENT_DESCRIPTION,
            {"provider": "scripted", "script": DEMO_SCRIPT},
        ),
        DemoAgent(
            FLAKY_AGENT_SLUG,
            "Flaky tool",
            "A scripted agent whose first tool call fails (division by zero); the model "
            "sees the error observation, corrects the call and finishes.",
            {"provider": "scripted", "script": FLAKY_SCRIPT},
        ),
        DemoAgent(
            BUDGET_AGENT_SLUG,
            "Over budget",
            f"A scripted agent that keeps calling tools; its budget of "
            f"{BUDGET_MAX_TOOL_CALLS} tool calls ends the run FAILED with budget_tool_calls.",
            {"provider": "scripted", "script": BUDGET_SCRIPT},
            {"max_tool_calls": BUDGET_MAX_TOOL_CALLS},
        ),
    ]
    # The openai provider needs a key even for local servers that ignore it.
    provider = (
        "openai" if config.openai_api_key else "anthropic" if config.anthropic_api_key else None
    )
    if provider is not None:
        model = config.assistant_model or DEFAULT_MODELS[provider]
        agents.append(
            DemoAgent(
                ASSISTANT_AGENT_SLUG,
                "Assistant",
                f"A real model ({provider}, {model}) with the built-in tools.",
                {"provider": provider, "model": model},
                {
                    "system_prompt": (
                        "You are a concise assistant. Use the calculator for arithmetic "
                        "and current_time for the date and time."
                    )
                },
            )
        )
    return agents


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
        _more_demo_agents(workspace, created)
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
    """The scripted demo agent, with the built-in tools installed in its workspace.

    An agent left by an older version (no script) is given the script and tool policy.
    """
    tools = {tool.name for tool in builtin_tools_install(workspace=workspace)}
    policy = {name: {"mode": "allow"} for name in DEMO_TOOLS if name in tools}
    agent, made = Agent.objects.get_or_create(
        workspace=workspace,
        slug=DEMO_AGENT_SLUG,
        defaults={
            "name": "Demo agent",
            "description": DEMO_AGENT_DESCRIPTION,
            "model_settings": {"provider": "scripted", "script": DEMO_SCRIPT},
            "tool_policy": policy,
        },
    )
    if made:
        created.append(f"agent {workspace.slug}/{DEMO_AGENT_SLUG}")
    elif "script" not in (agent.model_settings or {}):
        agent.description = DEMO_AGENT_DESCRIPTION
        agent.model_settings = {"provider": "scripted", "script": DEMO_SCRIPT}
        agent.tool_policy = {**policy, **(agent.tool_policy or {})}
        agent.save(update_fields=["description", "model_settings", "tool_policy", "updated_at"])
        # Its old runs were written by hand, not by the engine, which cannot continue them.
        unfinished = AgentRun.objects.filter(agent=agent).exclude(
            status__in=[status.value for status in TERMINAL_STATUSES]
        )
        for run_id in unfinished.values_list("id", flat=True):
            run_cancel(run_id=run_id, reason="A hand-made demo run: the engine cannot run it.")
        created.append(f"script for the agent {workspace.slug}/{DEMO_AGENT_SLUG}")
    return agent


def _more_demo_agents(workspace: Workspace, created: list[str]) -> None:
    """Every demo agent besides the first, created when missing (never changed after)."""
    tools = {tool.name for tool in builtin_tools_install(workspace=workspace)}
    policy = {name: {"mode": "allow"} for name in DEMO_TOOLS if name in tools}
    for demo in demo_agents(settings.CONFIG)[1:]:
        _, made = Agent.objects.get_or_create(
            workspace=workspace,
            slug=demo.slug,
            defaults={
                "name": demo.name,
                "description": demo.description,
                "model_settings": demo.model_settings,
                "tool_policy": policy,
                **demo.fields,
            },
        )
        if made:
            created.append(f"agent {workspace.slug}/{demo.slug}")


def _demo_token(user: AbstractUser, created: list[str]) -> str | None:
    # A revoked demo token counts too: re-seeding must not quietly re-issue a credential
    # that someone revoked.
    if ApiToken.objects.filter(user_id=user.pk, name=DEMO_TOKEN_NAME).exists():
        return None
    _, raw = api_token_create(user=user, name=DEMO_TOKEN_NAME)
    created.append(f"API token {DEMO_TOKEN_NAME!r} for {DEMO_USERNAME}")
    return raw


def _demo_run(agent: Agent, user: AbstractUser, created: list[str]) -> AgentRun:
    """The oldest demo run (of the demo agent, with the demo prompt), or a new PENDING one.

    The new run's first tick is enqueued after the commit. In ``standalone`` the
    in-process worker picks it up (or the recovery at start does, since an in-memory
    broker does not outlive a process); with ``REDIS_URL`` set, any worker does.
    """
    demo_input = {"prompt": DEMO_PROMPT}
    existing = AgentRun.objects.filter(agent=agent, input=demo_input).order_by("created_at").first()
    if existing is not None:
        return existing
    run = run_create(agent=agent, input=demo_input, created_by=user)
    transaction.on_commit(lambda: dispatch.enqueue_tick(run.id))
    created.append(f"demo run {run.id}")
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
