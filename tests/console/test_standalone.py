"""``agentmaestro standalone`` end to end: a real process with no PostgreSQL and no Redis.

It starts, seeds, serves the admin (with its CSS), the stream page and the WebSocket,
delivers a note live through the in-memory channel layer, stops on Ctrl-C, and on the
next start finds the same data and prints no new password.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.console.helpers import CLI, standalone_env
from tests.live import free_port

pytestmark = pytest.mark.slow


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


def embedded_stream(page: str) -> dict[str, Any]:
    match = re.search(r'<script id="stream-initial" type="application/json">(.*?)</script>', page)
    assert match, "the stream page embeds no stream state"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_standalone_serves_the_demo_without_postgres_or_redis_and_keeps_its_data(
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
        assert (data_dir / "db.sqlite3").exists()

        client = admin_login(server.url, password)
        admin = client.get("/admin/")
        assert admin.status_code == 200
        assert "AgentMaestro administration" in admin.text
        css = client.get("/static/admin/css/base.css")
        assert css.status_code == 200
        assert "text/css" in css.headers["content-type"]

        page = client.get(stream_path)
        assert page.status_code == 200
        stream = embedded_stream(page.text)
        last_seq = stream["last_seq"]
        assert [e["seq"] for e in stream["events"]] == list(range(1, last_seq + 1))

        run_id = stream["run_id"]
        with connect(
            f"ws://127.0.0.1:{port}/ws/runs/{run_id}/?since_seq=0",
            additional_headers={
                "Cookie": f"sessionid={client.cookies['sessionid']}",
                "Origin": server.url,
            },
        ) as ws:
            stored = [json.loads(ws.recv(timeout=10)) for _ in range(last_seq)]
            assert [f["seq"] for f in stored] == list(range(1, last_seq + 1))
            assert stored[0]["event_type"] == "run.created"

            note = client.post(
                f"/runs/{run_id}/notes/",
                data={
                    "message": "live in standalone",
                    "csrfmiddlewaretoken": csrf_token(page.text),
                },
                headers={"Accept": "application/json"},
            )
            assert note.status_code == 201, note.text
            frame = json.loads(ws.recv(timeout=10))
            assert (frame["seq"], frame["event_type"]) == (last_seq + 1, "run.note")
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
