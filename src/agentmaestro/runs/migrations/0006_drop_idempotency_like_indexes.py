"""Drop the ``varchar_pattern_ops`` ("_like") indexes PostgreSQL gets beside the unique
index of every unique CharField. Idempotency keys are only ever looked up whole, never
with LIKE, so these indexes were written on every tool call and execution and read by
nothing (bench/engine.py counts the bytes an iteration writes)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEXES = [
    ("runs_toolcall", "runs_toolcall_idempotency_key_a181459c_like"),
    ("tools_toolexecution", "tools_toolexecution_idempotency_key_a1afbee2_like"),
]


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for _table, name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, name in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {schema_editor.quote_name(name)} "
            f"ON {schema_editor.quote_name(table)} (idempotency_key varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0005_run_idempotency_key"),
        ("tools", "0003_drop_execution_counter"),
    ]

    operations = [migrations.RunPython(drop, create)]
