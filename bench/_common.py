"""Helpers shared by the benchmarks under ``bench/``.

A benchmark sets itself up: it points ``DATABASE_URL`` at a dedicated database on the
configured PostgreSQL server (dropped and re-created), migrates it, and starts the
processes it needs (a real uvicorn web process, as ``tests/live.py`` does), stopping
them again even on error. Figures are compared with a floor measured in the same run,
interleaved, because the machines this runs on are shared and noisy.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/agentmaestro"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BENCH_SECRET_KEY = "bench-only-not-a-secret-" + "k" * 40


def with_database_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def prepare_environment(database_name: str) -> tuple[str, str]:
    """Point this process (and every child it starts) at the benchmark's own database.

    Returns ``(database_url, redis_url)``. Call before Django is imported.
    """
    database_url = with_database_name(
        os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, database_name
    )
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "agentmaestro.settings"
    secret = os.environ.get("SECRET_KEY", "")
    if len(secret) < 40:
        os.environ["SECRET_KEY"] = BENCH_SECRET_KEY
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    return database_url, redis_url


def check_services(database_url: str, redis_url: str) -> None:
    """Fail early, with a readable message, when PostgreSQL or Redis does not answer."""
    import psycopg
    import redis

    try:
        psycopg.connect(with_database_name(database_url, "postgres"), connect_timeout=5).close()
    except psycopg.Error as exc:
        raise SystemExit(f"PostgreSQL at {database_url} does not answer: {exc}") from None
    try:
        redis.Redis.from_url(redis_url, socket_timeout=5).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"Redis at {redis_url} does not answer: {exc}") from None


def recreate_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(with_database_name(database_url, "postgres"), autocommit=True) as conn:
        # FORCE: a web process left over from an interrupted run may still be connected.
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(migrate: bool = True) -> None:
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WebServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def web_server(tmp_dir: Path, **env_overrides: str) -> Iterator[WebServer]:
    """A real ``uvicorn agentmaestro.asgi:application`` process, stopped on exit.

    ``BENCH_ASGI_APP`` (default ``agentmaestro.asgi:application``) and ``BENCH_UVICORN_ARGS``
    (extra uvicorn options) let a benchmark try a changed server without editing it.
    """
    import httpx

    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    env = {**os.environ, **env_overrides}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                os.environ.get("BENCH_ASGI_APP") or "agentmaestro.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "on",
                "--log-level",
                "warning",
                "--no-access-log",
                *shlex.split(os.environ.get("BENCH_UVICORN_ARGS", "")),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = WebServer("127.0.0.1", port, process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"web server exited early:\n{server.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"web server did not start in 60 s:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    # Fields 14 and 15 of stat(5) (utime, stime), counted after the ")" that ends field 2.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- statistics -------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# --- reporting --------------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table: our figure beside its floor, and the target."""

    label: str
    ours: float
    floor: float | None = None
    unit: str = ""
    # "min": ours/floor must be >= limit; "max": ours/floor must be <= limit.
    kind: str | None = None
    limit: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.floor is None or not self.floor or math.isnan(self.floor):
            return None
        return self.ours / self.floor

    @property
    def verdict(self) -> str:
        ratio = self.ratio
        if self.kind is None or self.limit is None:
            return ""
        if ratio is None or math.isnan(ratio):
            return "MISS"
        ok = ratio >= self.limit if self.kind == "min" else ratio <= self.limit
        return "PASS" if ok else "MISS"

    @property
    def target(self) -> str:
        if self.kind is None or self.limit is None:
            return "(report)"
        return f"{'>=' if self.kind == 'min' else '<='} {self.limit:g}x"


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit == "ev/s":
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def render_table(rows: Sequence[Row]) -> str:
    header = ("case", "ours", "floor", "unit", "ratio", "target", "")
    body = [
        (
            row.label,
            fmt(row.ours, row.unit),
            fmt(row.floor, row.unit),
            row.unit,
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            row.target,
            row.verdict,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    aligns = ["<", ">", ">", "<", ">", "<", "<"]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            f"{cell:{align}{width}}"
            for cell, align, width in zip(cells, aligns, widths, strict=True)
        ).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(cells) for cells in body)])


# --- additions for bench/engine.py ------------------------------------------------------


def with_redis_db(url: str, db: int) -> str:
    """``url`` with its database number replaced: a benchmark's Celery queues must not be
    shared with the workers of tests running beside it on the same Redis server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def wait_for_celery_workers(app: object, names: Sequence[str], timeout: float = 180) -> None:
    """Block until every named Celery worker (``name@host``) answers a ping."""
    deadline = time.monotonic() + timeout
    wanted = set(names)
    while True:
        replies = app.control.ping(timeout=1.0)  # type: ignore[attr-defined]
        answered = {name for reply in replies or [] for name in reply}
        if wanted <= answered:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Celery workers {sorted(wanted - answered)} did not start")


def finish(rows: Sequence[Row], results: dict[str, Any], started: float) -> None:
    """Count the targets, print the table, and end with the one ``RESULT {json}`` line."""
    targets = [row for row in rows if row.verdict]
    results["targets_passed"] = sum(row.verdict == "PASS" for row in targets)
    results["targets_total"] = len(targets)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    print()
    print(render_table(rows))
    print()
    print("RESULT " + json.dumps(results, sort_keys=True), flush=True)
