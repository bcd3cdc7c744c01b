"""Real AgentMaestro processes (web, worker, beat) for tests that need them.

They run as separate processes against the test database and Redis, exactly as
production does: a worker commits events, Redis carries the broadcasts, a web process's
consumers deliver them to real WebSocket clients.

Every process writes its output to a log file in the test's temporary directory.
``stopping_all`` stops whatever was started in it, and when the block fails it appends
the tail of every log to the error, so a failure shows what the servers said.
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
from typing import TypeVar

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30  # seconds for a web process to answer /healthz
STOP_TIMEOUT = 15  # seconds for a graceful stop before SIGKILL
LOG_TAIL_LINES = 40


@dataclass
class Process:
    """One of our server processes, its output in ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def name(self) -> str:
        return self.log_path.stem

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no chance to ack, requeue or clean up, as in a real crash."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it takes too long."""
        self.terminate()
        self.wait_stopped()

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def wait_stopped(self) -> None:
        """Wait for the end a ``terminate`` asked for; SIGKILL if it takes too long."""
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()


class Worker(Process):
    """A Celery worker process (``agentmaestro worker``)."""


class Beat(Process):
    """The Celery beat process (``agentmaestro beat``)."""


@dataclass
class LiveServer(Process):
    """A web process (uvicorn serving the ASGI application)."""

    host: str = "127.0.0.1"
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


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


def server_env(**overrides: str | None) -> dict[str, str]:
    """The environment of a server process on the test database and Redis.

    An override of ``None`` removes the variable, so the process sees its default.
    """
    env: dict[str, str | None] = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SETTINGS_MODULE": "agentmaestro.settings",
        "CONN_MAX_AGE": "0",
        **overrides,
    }
    return {name: value for name, value in env.items() if value is not None}


def _spawn(
    args: list[str], log_path: Path, env: dict[str, str], cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _agentmaestro(*args: str) -> list[str]:
    """The ``agentmaestro`` command line, run by this interpreter."""
    return [sys.executable, "-m", "agentmaestro.cli", *args]


def start_worker(tmp_dir: Path, name: str = "w1", **env_overrides: str | None) -> Worker:
    """A real Celery worker process (both queues, thread pool) on the test database."""
    process = _spawn(
        _agentmaestro(
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
        ),
        tmp_dir / f"worker-{name}.log",
        server_env(**{"AGENTMAESTRO_DB_POOL_SIZE": "4", **env_overrides}),
    )
    return Worker(process, tmp_dir / f"worker-{name}.log")


def stop_worker(worker: Process) -> None:
    worker.stop()


def start_beat(tmp_dir: Path, **env_overrides: str | None) -> Beat:
    """The periodic reconciler (``agentmaestro beat``), logging each task it sends.

    It runs in ``tmp_dir``, where Celery beat keeps its schedule file.
    """
    log_path = tmp_dir / "beat.log"
    process = _spawn(
        _agentmaestro("beat", "--loglevel", "INFO"),
        log_path,
        server_env(**env_overrides),
        cwd=tmp_dir,
    )
    return Beat(process, log_path)


def spawn_web(tmp_dir: Path, name: str = "web", **env_overrides: str | None) -> LiveServer:
    """``agentmaestro web`` on a free port, not yet serving: see ``wait_until_serving``.

    (Starting several at once and then waiting for them saves seconds.)
    """
    port = free_port()
    log_path = tmp_dir / f"{name}-{port}.log"
    process = _spawn(
        _agentmaestro("web", "--host", "127.0.0.1", "--port", str(port)),
        log_path,
        server_env(**env_overrides),
    )
    return LiveServer(process, log_path, "127.0.0.1", port)


def start_web(tmp_dir: Path, name: str = "web", **env_overrides: str | None) -> LiveServer:
    """``agentmaestro web`` on a free port, once it answers ``/healthz``."""
    server = spawn_web(tmp_dir, name, **env_overrides)
    try:
        wait_until_serving(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_serving(server: LiveServer, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not start in {timeout} s:\n{server.log()}")
        time.sleep(0.1)


def wait_for_log(process: Process, text: str, timeout: float = 10) -> None:
    """Wait until ``text`` appears in the process's log."""
    deadline = time.monotonic() + timeout
    while text not in process.log():
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{process.name} never logged {text!r}")
        time.sleep(0.1)


P = TypeVar("P", bound=Process)


class Started:
    """The processes started so far inside ``stopping_all``."""

    def __init__(self) -> None:
        self.processes: list[Process] = []

    def add(self, process: P) -> P:
        self.processes.append(process)
        return process

    def assert_all_running(self) -> None:
        exited = [p.name for p in self.processes if p.process.poll() is not None]
        assert not exited, f"processes exited before the end: {exited}"


@contextmanager
def stopping_all() -> Iterator[Started]:
    """Stop every process added, whatever happens; on failure, add their logs to the error."""
    started = Started()
    try:
        yield started
    except BaseException as exc:
        for process in started.processes:
            exc.add_note(f"--- {process.log_path} (last {LOG_TAIL_LINES} lines) ---")
            exc.add_note(process.log_tail())
        raise
    finally:
        # All at once: each takes a moment to shut down gracefully.
        for process in started.processes:
            process.terminate()
        for process in started.processes:
            process.wait_stopped()


@contextmanager
def run_live_server(tmp_dir: Path, **env_overrides: str | None) -> Iterator[LiveServer]:
    """uvicorn serving the ASGI application directly, for the whole block."""
    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    assert connection.vendor == "postgresql"
    process = _spawn(
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
        log_path,
        server_env(**env_overrides),
    )
    server = LiveServer(process, log_path, "127.0.0.1", port)
    try:
        wait_until_serving(server)
        yield server
    finally:
        server.stop()
