"""``agentmaestro standalone`` end to end: a real process with no PostgreSQL and no Redis.

It starts, seeds, runs the demo run to the end with the engine inside the same process
(a Celery worker and beat in its threads, on the in-memory broker), serves the admin
(with its CSS), the stream page and the WebSocket, delivers a note live through the
in-memory channel layer, starts new runs from the console, stops on Ctrl-C, and on the
next start finds the same data and prints no new password. Killed with SIGKILL in the
middle of a run, it finishes that run after the next start.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.console.helpers import CLI, run_cli, standalone_env
from tests.live import free_port

pytestmark = pytest.mark.slow

# The demo agent's script (console/demo.py): three model turns, two parallel tool calls
# in each of the first two. Its tools are built-ins, which eager continuation runs inside
# the step that creates their calls, so the run never waits for them.
DEMO_TRANSITIONS = [("PENDING", "RUNNING"), ("RUNNING", "COMPLETED")]
# Long enough for any run here to finish, far below the 120 s lease of a model call that
# a killed process leaves behind.
RUN_TIMEOUT = 30.0


@dataclass
class Standalone:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def banner(self, label: str) -> str:
        match = re.search(rf"^  {label}:\s+(.+)$", self.output(), re.M)
        assert match, f"no {label!r} line in the banner:\n{self.output()}"
        return match.group(1).strip()


@contextmanager
def standalone(tmp_path: Path, data_dir: Path, port: int, name: str) -> Iterator[Standalone]:
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CLI), "standalone", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=tmp_path,
            env=standalone_env(PYTHONUNBUFFERED="1"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Standalone(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"standalone exited early:\n{server.output()}"
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"standalone did not start:\n{server.output()}"
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop_with_ctrl_c(server: Standalone) -> None:
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=20) == 0, server.output()
    assert server.output().rstrip().endswith("Stopped.")


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no CSRF token in the form"
    return match.group(1)


def admin_login(url: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    form = client.get("/admin/login/")
    response = client.post(
        "/admin/login/",
        data={
            "username": "demo",
            "password": password,
            "next": "/admin/",
            "csrfmiddlewaretoken": csrf_token(form.text),
        },
    )
    assert response.status_code == 302, response.text[:2000]
    assert response.headers["location"] == "/admin/"
    return client


def ws_connect(server: Standalone, client: httpx.Client, run_id: str, since_seq: int = 0) -> Any:
    return connect(
        f"{server.url.replace('http://', 'ws://')}/ws/runs/{run_id}/?since_seq={since_seq}",
        additional_headers={
            "Cookie": f"sessionid={client.cookies['sessionid']}",
            "Origin": server.url,
        },
    )


def next_event(ws: Any, deadline: float) -> dict[str, Any]:
    """The next stored event on the socket (heartbeats and token deltas are skipped)."""
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no event in time"
        frame: dict[str, Any] = json.loads(ws.recv(timeout=remaining))
        if frame.get("type") == "event":
            return frame


def events_until(ws: Any, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Events in order, up to and including the first one ``done`` accepts."""
    deadline = time.monotonic() + RUN_TIMEOUT
    events: list[dict[str, Any]] = []
    while not events or not done(events[-1]):
        try:
            events.append(next_event(ws, deadline))
        except (AssertionError, TimeoutError):
            seen = [(e["seq"], e["event_type"], e["payload"].get("to_status")) for e in events]
            raise AssertionError(f"not there within {RUN_TIMEOUT}s; events: {seen}") from None
    return events


def finished(event: dict[str, Any]) -> bool:
    return event["event_type"] == "run.status_changed" and event["payload"]["to_status"] in {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    }


def transitions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (e["payload"]["from_status"], e["payload"]["to_status"])
        for e in events
        if e["event_type"] == "run.status_changed"
    ]


def embedded_stream(page: str) -> dict[str, Any]:
    match = re.search(r'<script id="stream-initial" type="application/json">(.*?)</script>', page)
    assert match, "the stream page embeds no stream state"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_standalone_runs_the_demo_without_postgres_or_redis_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    with standalone(tmp_path, data_dir, port, "first") as server:
        login = server.banner("Login")
        assert login.startswith("demo / ")
        password = login.split()[2]
        assert server.banner("API token").startswith("am_")
        stream_path = server.banner("Demo run").removeprefix(server.url)
        assert re.fullmatch(r"/runs/[0-9a-f-]{36}/stream/", stream_path)
        assert server.banner("Data dir") == str(data_dir)
        assert server.banner("Engine").startswith("in this process")
        assert (data_dir / "db.sqlite3").exists()
        # A second engine on the same SQLite file would take over the first one's claims.
        other = run_cli(
            "standalone",
            *("--port", str(free_port()), "--data-dir", str(data_dir)),
            env=standalone_env(),
            cwd=tmp_path,
        )
        assert other.returncode == 1
        assert "Another 'agentmaestro standalone' is running" in other.stderr

        client = admin_login(server.url, password)
        admin = client.get("/admin/")
        assert admin.status_code == 200
        assert "AgentMaestro administration" in admin.text
        css = client.get("/static/admin/css/base.css")
        assert css.status_code == 200
        assert "text/css" in css.headers["content-type"]

        page = client.get(stream_path)
        assert page.status_code == 200
        run_id = embedded_stream(page.text)["run_id"]
        with ws_connect(server, client, run_id) as ws:
            # The engine in the process runs the demo run to its end by itself.
            events = events_until(ws, finished)
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert events[0]["event_type"] == "run.created"
            assert transitions(events) == DEMO_TRANSITIONS
            tools = sorted(
                e["payload"]["tool_name"] for e in events if e["event_type"] == "tool_call.created"
            )
            assert tools == ["calculator", "calculator", "current_time", "echo"]

            page = client.get(stream_path)
            stream = embedded_stream(page.text)
            assert stream["status"] == "COMPLETED"
            assert "42 / 6 = 7" in page.text
            last_seq = stream["last_seq"]

            note = client.post(
                f"/runs/{run_id}/notes/",
                data={
                    "message": "live in standalone",
                    "csrfmiddlewaretoken": csrf_token(page.text),
                },
                headers={"Accept": "application/json"},
            )
            assert note.status_code == 201, note.text
            frame = events_until(ws, lambda e: e["event_type"] == "run.note")[-1]
            assert frame["seq"] == last_seq + 1
            assert frame["payload"]["message"] == "live in standalone"

        stop_with_ctrl_c(server)

    with standalone(tmp_path, data_dir, port, "second") as server:
        output = server.output()
        assert password not in output
        assert "shown only now" not in output
        assert "password printed at first start" in server.banner("Login")
        assert "changepassword demo" in server.banner("Login")
        assert server.banner("Demo run") == f"{server.url}{stream_path}"

        client = admin_login(server.url, password)
        stream = embedded_stream(client.get(stream_path).text)
        assert stream["run_id"] == run_id
        assert stream["last_seq"] == last_seq + 1
        stop_with_ctrl_c(server)


# seeddemo, then an agent whose second model call takes 4 s: long enough to kill the
# process in it.
SEED_WITH_SLOW_AGENT = """
from django.core.management import call_command
from agentmaestro.agents.models import Agent
from agentmaestro.workspaces.models import Workspace

call_command("migrate", verbosity=0)
call_command("seeddemo")
turn = lambda value, delay: {
    "tool_calls": [{"name": "echo", "arguments": {"value": value}}],
    "delay_ms": delay,
}
Agent.objects.create(
    workspace=Workspace.objects.get(slug="demo"),
    slug="slow",
    name="Slow",
    model_settings={
        "provider": "scripted",
        "script": [turn("one", 200), turn("two", 4000), {"text": "slow done"}],
    },
    tool_policy={"echo": {"mode": "allow"}},
)
"""


def agent_options(page: str) -> dict[str, str]:
    """The new-run form's agents: slug -> id."""
    form = re.search(r'<form id="new-run-form".*?</form>', page, re.S)
    assert form, "the console has no new-run form"
    return {
        slug: value
        for value, slug in re.findall(r'<option value="([^"]+)" data-slug="([^"]+)"', form.group(0))
    }


def start_run(client: httpx.Client, agent_id: str, prompt: str) -> str:
    """Start a run through the console's form; returns its id."""
    home = client.get("/", follow_redirects=True)
    response = client.post(
        "/runs/new/",
        data={"agent": agent_id, "prompt": prompt, "csrfmiddlewaretoken": csrf_token(home.text)},
    )
    assert response.status_code == 302, response.text
    match = re.fullmatch(r"/runs/([0-9a-f-]{36})/", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def db_rows(data_dir: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(data_dir / "db.sqlite3")) as db:
        return db.execute(sql, params).fetchall()


def model_steps(data_dir: Path, run_id: str) -> list[tuple[int, str, int]]:
    """(index, status, attempt) of the run's model calls."""
    return db_rows(
        data_dir,
        'SELECT s."index", s.status, s.attempt FROM runs_agentstep s '
        "WHERE s.run_id = ? AND s.kind = 'MODEL_CALL' ORDER BY s.\"index\"",
        run_id.replace("-", ""),
    )


def test_standalone_starts_runs_from_the_console_and_finishes_a_run_killed_midway(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = standalone_env(AGENTMAESTRO_DATA_DIR=str(data_dir))
    # Seeded by another process, whose in-memory broker dies with it: standalone must
    # find the demo run in the database and run it. (One process: each start is slow.)
    seeded = run_cli("shell", "-c", SEED_WITH_SLOW_AGENT, env=env, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    password = seeded.stdout.split("Login: demo / ")[1].split()[0]
    demo_run = seeded.stdout.split("Demo run: /runs/")[1].split("/")[0]
    port = free_port()

    with standalone(tmp_path, data_dir, port, "first") as server:
        client = admin_login(server.url, password)
        with ws_connect(server, client, demo_run) as ws:
            assert transitions(events_until(ws, finished)) == DEMO_TRANSITIONS

        # A member starts a run from the console and watches it finish.
        agents = agent_options(client.get("/", follow_redirects=True).text)
        assert set(agents) == {"demo-agent", "flaky-tool", "over-budget", "slow"}
        run_id = start_run(client, agents["demo-agent"], "from the console form")
        assert client.get(f"/runs/{run_id}/").status_code == 200
        assert client.get(f"/runs/{run_id}/stream/").status_code == 200
        with ws_connect(server, client, run_id) as ws:
            events = events_until(ws, finished)
        assert events[0]["payload"]["input"] == {"prompt": "from the console form"}
        assert transitions(events) == DEMO_TRANSITIONS

        # The slow run is killed with the process during its second model call.
        slow_run = start_run(client, agents["slow"], "take your time")
        with ws_connect(server, client, slow_run) as ws:
            events_until(
                ws,
                lambda e: (
                    e["event_type"] == "step.created"
                    and e["payload"]["kind"] == "MODEL_CALL"
                    and e["payload"]["index"] > 1
                ),
            )
        time.sleep(1.0)  # claimed at once, then 4 s in the model
        server.process.kill()
        server.process.wait(timeout=10)

    [(status,)] = db_rows(
        data_dir, "SELECT status FROM runs_agentrun WHERE id = ?", slow_run.replace("-", "")
    )
    assert status == "RUNNING"
    cut_off = model_steps(data_dir, slow_run)[-1]
    assert cut_off[1:] == ("STARTED", 1)

    with standalone(tmp_path, data_dir, port, "second") as server:
        client = admin_login(server.url, password)
        with ws_connect(server, client, slow_run) as ws:
            events = events_until(ws, finished)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["payload"]["to_status"] == "COMPLETED"
        stream = embedded_stream(client.get(f"/runs/{slow_run}/stream/").text)
        assert stream["status"] == "COMPLETED"
        stop_with_ctrl_c(server)

    # The cut-off model call ran again (attempt 2), at once rather than when its lease
    # ran out; every tool call ran once.
    steps = model_steps(data_dir, slow_run)
    assert [(index, status) for index, status, _ in steps][1] == (cut_off[0], "COMPLETED")
    assert [attempt for _, _, attempt in steps] == [1, 2, 1]
    calls = db_rows(
        data_dir,
        "SELECT status, attempt FROM runs_toolcall WHERE run_id = ?",
        slow_run.replace("-", ""),
    )
    assert calls == [("SUCCEEDED", 1), ("SUCCEEDED", 1)]
    statuses = db_rows(data_dir, "SELECT status FROM runs_agentrun")
    assert statuses == [("COMPLETED",)] * 3


def test_a_fresh_standalone_is_driven_through_the_api_a_websocket_and_agentmaestro_run(
    tmp_path: Path,
) -> None:
    """The quickstart as a user follows it: the printed token, the REST API, a WebSocket,
    and ``agentmaestro run … --follow`` streaming demo agents to their ends."""
    with standalone(tmp_path, tmp_path / "data", free_port(), "quickstart") as server:
        token = server.banner("API token").split()[0]
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=10) as api:
            (workspace,) = api.get("/api/v1/workspaces/").json()["items"]
            created = api.post(
                f"/api/v1/workspaces/{workspace['id']}/runs/",
                json={"agent": "flaky-tool", "input": {"prompt": "split the bill"}},
            )
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]
            ws_url = f"{server.url.replace('http://', 'ws://')}/ws/runs/{run_id}/?since_seq=0"
            with connect(ws_url, additional_headers=auth) as ws:
                streamed = events_until(ws, finished)
            assert streamed[-1]["payload"]["to_status"] == "COMPLETED"
            stored = api.get(f"/api/v1/runs/{run_id}/events/", params={"limit": 1000}).json()
            assert [(e["seq"], e["event_type"], e["payload"]) for e in streamed] == [
                (e["seq"], e["event_type"], e["payload"]) for e in stored["items"]
            ]
            assert api.get(f"/api/v1/runs/{run_id}/").json()["status"] == "COMPLETED"

        client_env = standalone_env(AGENTMAESTRO_URL=server.url, AGENTMAESTRO_TOKEN=token)
        done = subprocess.run(
            [str(CLI), "run", "demo-agent", "--input", "What is 6 * 7?", "--follow"],
            env=client_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].startswith("run ")
        assert 'tool ▸ calculator({"expression":"6 * 7"})' in lines
        assert '  ◂ calculator → {"value":42}' in lines
        assert "● COMPLETED" in lines
        assert lines[-2] == "● COMPLETED"  # the answer was the last turn's text, shown once
        assert sum("6 * 7 = 42, and 42 / 6 = 7" in line for line in lines) == 1
        assert "\x1b[" not in done.stdout  # not a terminal: no colours

        failed = subprocess.run(
            [str(CLI), "run", "over-budget", "--follow"],
            env=client_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "● FAILED" in failed.stdout
        assert "budget_tool_calls:" in failed.stdout

        refused = subprocess.run(
            [str(CLI), "run", "demo-agent", "--token", "not-a-token"],
            env=client_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2
        assert refused.stderr.startswith("agentmaestro run: ")
