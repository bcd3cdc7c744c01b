"""A real AgentMaestro web process (uvicorn) for tests that need one.

It runs as a separate process against the test database and Redis, exactly as
production does: the test process writes events, Redis carries the broadcasts, the
server's consumers deliver them to real WebSocket clients.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LiveServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_database_url() -> str:
    """DATABASE_URL with the name swapped for pytest-django's test database."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or ""
    password = db.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def server_env(**overrides: str) -> dict[str, str]:
    """The environment of a server process on the test database and Redis."""
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SETTINGS_MODULE": "agentmaestro.settings",
        "CONN_MAX_AGE": "0",
        **overrides,
    }


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no chance to ack, requeue or clean up, as in a real crash."""
        self.process.kill()
        self.process.wait(timeout=10)


def start_worker(tmp_dir: Path, name: str = "w1", **env_overrides: str) -> Worker:
    """A real Celery worker process (both queues, thread pool) on the test database."""
    log_path = tmp_dir / f"worker-{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentmaestro.cli",
                "worker",
                "--queues",
                "ticks,activities",
                "--pool",
                "threads",
                "--concurrency",
                "8",
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=server_env(**{"AGENTMAESTRO_DB_POOL_SIZE": "4", **env_overrides}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, log_path)


def stop_worker(worker: Worker) -> None:
    worker.process.terminate()
    try:
        worker.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait(timeout=10)


@contextmanager
def run_live_server(tmp_dir: Path, **env_overrides: str) -> Iterator[LiveServer]:
    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    env = server_env(**env_overrides)
    assert connection.vendor == "postgresql"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "agentmaestro.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "on",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer("127.0.0.1", port, process, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"live server exited early:\n{server.log()}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"live server did not start in 30 s:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
