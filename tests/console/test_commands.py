"""createtoken, seeddemo and web, called as management commands and through the CLI."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from agentmaestro.accounts.models import ApiToken
from agentmaestro.accounts.services import api_token_authenticate
from agentmaestro.agents.models import Agent
from agentmaestro.console.demo import DEMO_PROMPT
from agentmaestro.console.management.commands.web import web_environment_defaults
from agentmaestro.runs.models import AgentRun, RunEvent
from agentmaestro.runs.services.runs import run_create
from agentmaestro.runs.services.transitions import run_transition
from agentmaestro.runs.states import RunStatus
from agentmaestro.tools.models import ToolDefinition
from agentmaestro.workspaces.models import Role, Workspace, WorkspaceMembership
from tests import live
from tests.console.helpers import CLI, run_cli, standalone_env
from tests.factories import Personas


def call(name: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_createtoken_prints_a_token_that_authenticates_and_stores_only_its_digest(
    personas: Personas,
) -> None:
    out, err = call("createtoken", personas.member.username, "--name", "ci")

    raw = out.strip()
    assert api_token_authenticate(raw) == personas.member
    token = ApiToken.objects.get()
    assert token.name == "ci"
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    stored = [token.name, token.prefix, token.digest]
    assert all(raw not in value for value in stored)
    assert raw.startswith(token.prefix)
    assert "shown only now" in err


@pytest.mark.django_db
def test_createtoken_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call("createtoken", "nobody")

    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_createtoken_refuses_an_inactive_user(personas: Personas) -> None:
    personas.member.is_active = False
    personas.member.save()

    with pytest.raises(CommandError, match="inactive"):
        call("createtoken", personas.member.username)


@pytest.mark.django_db
def test_the_createtoken_command_exits_non_zero_for_an_unknown_user(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": live.test_database_url(),
        "DJANGO_SETTINGS_MODULE": "agentmaestro.settings",
    }

    result = run_cli("createtoken", "nobody", env=env, cwd=tmp_path)

    assert result.returncode == 1
    assert "No user named 'nobody'" in result.stderr
    assert result.stdout == ""


@pytest.mark.django_db
def test_seeddemo_twice_creates_one_of_everything() -> None:
    first, _ = call("seeddemo")
    second, _ = call("seeddemo")

    user = get_user_model().objects.get(username="demo")
    assert (user.is_staff, user.is_superuser) == (True, True)
    workspace = Workspace.objects.get(slug="demo")
    assert WorkspaceMembership.objects.get(workspace=workspace).role == Role.OWNER
    assert set(Agent.objects.filter(workspace=workspace).values_list("slug", flat=True)) == {
        "demo-agent",
        "flaky-tool",
        "over-budget",
    }
    assert ApiToken.objects.filter(user=user).count() == 1
    agent = Agent.objects.get(workspace=workspace, slug="demo-agent")
    assert agent.model_settings["provider"] == "scripted"
    assert len(agent.model_settings["script"]) == 3
    assert set(agent.tool_policy) == {"calculator", "current_time", "echo"}
    assert set(
        ToolDefinition.objects.filter(workspace=workspace).values_list("name", flat=True)
    ) >= {
        "calculator",
        "current_time",
        "echo",
    }
    # Created for the engine to run (standalone's test shows it running to the end).
    run = AgentRun.objects.get()
    assert (run.agent, run.status) == (agent, "PENDING")
    assert list(RunEvent.objects.filter(run=run).values_list("type", flat=True)) == ["run.created"]
    # The secrets are printed by the first call only, and they work.
    password = first.split("Login: demo / ")[1].split()[0]
    token = first.split("API token: ")[1].split()[0]
    assert user.check_password(password)
    assert api_token_authenticate(token) == user
    assert password not in second
    assert token not in second
    assert "The demo data already exists; nothing created." in second
    assert "changepassword demo" in second
    assert f"/runs/{run.id}/stream/" in second


def test_web_refuses_several_workers_without_redis(tmp_path: Path) -> None:
    result = run_cli("web", "--workers", "2", env=standalone_env(), cwd=tmp_path)

    assert result.returncode == 1
    assert "--workers above 1 needs REDIS_URL" in result.stderr


@pytest.mark.django_db
def test_web_refuses_to_start_on_postgresql_without_a_secret_key(tmp_path: Path) -> None:
    env = standalone_env(DATABASE_URL=live.test_database_url())

    result = run_cli("web", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert "refusing to start: SECRET_KEY is not set" in result.stderr


@pytest.mark.parametrize(
    ("environ", "pool_size"),
    [
        ({"DATABASE_URL": "postgres://am@db:5432/am"}, "8"),
        ({"DATABASE_URL": "postgresql://am@db/am", "AGENTMAESTRO_DB_POOL_SIZE": "20"}, "20"),
        ({"DATABASE_URL": "postgres://am@db/am", "AGENTMAESTRO_DB_POOL_SIZE": "0"}, "0"),
        ({"DATABASE_URL": "sqlite:///tmp/am.sqlite3"}, None),
        ({}, None),
    ],
)
def test_web_gives_postgresql_a_connection_pool_unless_one_is_configured(
    environ: dict[str, str], pool_size: str | None
) -> None:
    web_environment_defaults(environ)

    assert environ.get("AGENTMAESTRO_DB_POOL_SIZE") == pool_size


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("standalone", ["--host", "--port", "--data-dir"]),
        ("web", ["--host", "--port", "--workers"]),
        ("createtoken", ["username", "--name"]),
        ("seeddemo", []),
    ],
)
def test_each_command_documents_its_options(
    tmp_path: Path, command: str, options: list[str]
) -> None:
    result = run_cli(command, "--help", env=standalone_env(), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: agentmaestro {command}")
    for option in options:
        assert option in result.stdout


def test_web_serves_until_ctrl_c(tmp_path: Path) -> None:
    port = live.free_port()
    process = subprocess.Popen(
        [str(CLI), "web", "--port", str(port)],
        cwd=tmp_path,
        env=standalone_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "web did not start"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr
    assert "Warning: DATABASE_URL is not set" in stderr


@pytest.mark.django_db
def test_seeddemo_upgrades_a_demo_agent_without_a_script_and_cancels_its_old_runs() -> None:
    call("seeddemo")
    agent = Agent.objects.get(slug="demo-agent")
    agent.model_settings = {"provider": "scripted"}  # as seeded before the engine existed
    agent.save()
    AgentRun.objects.all().delete()
    old = run_create(agent=agent, input={"prompt": "hand-made"})
    run_transition(run_id=old.id, to_status=RunStatus.RUNNING)

    out, _ = call("seeddemo")

    agent.refresh_from_db()
    assert len(agent.model_settings["script"]) == 3
    old.refresh_from_db()
    assert old.status == "CANCELLED"
    demo = AgentRun.objects.exclude(id=old.id).get()
    assert (demo.status, demo.input) == ("PENDING", {"prompt": DEMO_PROMPT})
    assert f"Demo run: /runs/{demo.id}/stream/" in out
