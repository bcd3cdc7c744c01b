import json
import os
import sqlite3
import uuid
from contextlib import closing
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command

from tests.console.helpers import run_cli, standalone_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.django_db
def test_the_models_and_the_migrations_agree() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


# --- runs 0009: events keyed by (run, seq) ---------------------------------------------

RUN_A, RUN_B = uuid.UUID(int=1), uuid.UUID(int=2)
EVENTS = [
    (RUN_A, 1, "run.note", 1, {"message": "a", "source": "s"}),
    (RUN_A, 2, "run.note", 1, {"message": "b", "source": "s"}),
    (RUN_B, 1, "run.note", 1, {"message": "c", "source": "s"}),
]
INSERT = (
    "INSERT INTO runs_runevent (run_id, seq, type, version, payload, created_at)"
    " VALUES ({0}, {0}, {0}, {0}, {0}, '2026-12-02 10:00:00+00')"
)
SELECT = "SELECT run_id, seq, type, version, payload FROM runs_runevent ORDER BY 1, 2"


class Database:
    """The database a subprocess migrates, as plain DB-API rows (no Django here)."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.env = standalone_env(DEBUG="1", AGENTMAESTRO_DATA_DIR=str(tmp_path))
        self.path = tmp_path / "db.sqlite3"
        if backend == "postgresql":
            server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
            self.admin = f"{server}/postgres"
            self.name = f"am_migration_{uuid.uuid4().hex[:12]}"
            self.url = f"{server}/{self.name}"
            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            self.env["DATABASE_URL"] = self.url

    def migrate(self, *target: str) -> None:
        done = run_cli("migrate", *target, env=self.env, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        if self.backend == "postgresql":
            with psycopg.connect(self.url, autocommit=True) as conn:
                for run, seq, type_, version, payload in rows:
                    sql = INSERT.format("%s")
                    conn.execute(sql, (run, seq, type_, version, json.dumps(payload)))
        else:
            with closing(sqlite3.connect(self.path)) as db:
                for run, seq, type_, version, payload in rows:
                    sql = INSERT.format("?")
                    db.execute(sql, (run.hex, seq, type_, version, json.dumps(payload)))
                db.commit()

    def events(self) -> list[tuple[Any, ...]]:
        if self.backend == "postgresql":
            with psycopg.connect(self.url) as conn:
                return list(conn.execute(SELECT))
        with closing(sqlite3.connect(self.path)) as db:
            return [(uuid.UUID(r), s, t, v, json.loads(p)) for r, s, t, v, p in db.execute(SELECT)]

    def key_and_columns(self) -> tuple[list[str], list[str]]:
        if self.backend == "postgresql":
            with psycopg.connect(self.url) as conn:
                columns = conn.execute(
                    "SELECT attname, attnum = ANY(i.indkey), array_position(i.indkey, attnum)"
                    " FROM pg_attribute JOIN pg_index i ON i.indrelid = attrelid"
                    " WHERE attrelid = 'runs_runevent'::regclass AND i.indisprimary"
                    " AND attnum > 0 AND NOT attisdropped"
                ).fetchall()
        else:
            with closing(sqlite3.connect(self.path)) as db:
                info = db.execute("PRAGMA table_info(runs_runevent)").fetchall()
                columns = [(name, pk > 0, pk) for _, name, _, _, _, pk in info]
        key = [name for name, in_key, _ in sorted(columns, key=lambda c: c[2] or 0) if in_key]
        return key, [name for name, _, _ in columns]

    def drop(self) -> None:
        if self.backend == "postgresql":
            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_keying_events_by_run_and_seq_keeps_every_event(backend: str, tmp_path: Path) -> None:
    """Migration 0009 changes the events table by hand (Django cannot migrate to a
    composite key): on an existing database every event survives, keyed by (run, seq),
    the surrogate id is gone, and a second event with one (run, seq) is refused."""
    database = Database(backend, tmp_path)
    try:
        database.migrate("runs", "0008")
        database.insert(EVENTS)

        database.migrate()

        assert database.events() == EVENTS
        key, columns = database.key_and_columns()
        assert key == ["run_id", "seq"]
        assert "id" not in columns
        with pytest.raises((psycopg.errors.UniqueViolation, sqlite3.IntegrityError)):
            database.insert([(RUN_A, 2, "run.note", 1, {"message": "again", "source": "s"})])
    finally:
        database.drop()
