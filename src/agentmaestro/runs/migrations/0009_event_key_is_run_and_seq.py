"""Events are keyed by (run, seq): the surrogate ``id`` column and its index go.

Django cannot migrate a table to a composite primary key by itself, so the state change
is declared here and the tables are changed by hand: PostgreSQL in place, SQLite (which
cannot change a primary key) by copying into a table made from the new state.
"""

from typing import Any

from django.db import migrations, models

_POSTGRESQL = [
    "ALTER TABLE runs_runevent DROP CONSTRAINT event_unique_seq",
    "ALTER TABLE runs_runevent DROP COLUMN id",
    "ALTER TABLE runs_runevent ADD CONSTRAINT runs_runevent_pkey PRIMARY KEY (run_id, seq)",
]
_COLUMNS = "run_id, seq, type, version, payload, created_at"


def key_by_run_and_seq(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in _POSTGRESQL:
            schema_editor.execute(sql)
        return
    schema_editor.execute("ALTER TABLE runs_runevent RENAME TO runs_runevent_old")
    schema_editor.execute("DROP INDEX IF EXISTS event_unique_seq")
    schema_editor.create_model(apps.get_model("runs", "RunEvent"))
    schema_editor.execute(
        f"INSERT INTO runs_runevent ({_COLUMNS}) SELECT {_COLUMNS} FROM runs_runevent_old"
    )
    schema_editor.execute("DROP TABLE runs_runevent_old")


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0008_event_payload_as_json_text"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="runevent", name="event_unique_seq"),
                migrations.RemoveField(model_name="runevent", name="id"),
                migrations.AddField(
                    model_name="runevent",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "run_id",
                        "seq",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
            ]
        ),
        migrations.RunPython(key_by_run_and_seq, elidable=False),
    ]
