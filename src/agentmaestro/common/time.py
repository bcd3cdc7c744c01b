from __future__ import annotations

from datetime import datetime


def iso(value: datetime | None) -> str | None:
    """The one textual form of a timestamp in events and snapshots (UTC, ISO 8601)."""
    return None if value is None else value.isoformat()


def iso_from_db_text(value: str | None) -> str | None:
    """``iso()`` of a timestamp the database rendered as text (``CAST(col AS text)``).

    Reading timestamps as text skips building a datetime per value, which was a fifth of
    a large snapshot's time (bench/api.py). PostgreSQL (session time zone UTC, as Django
    sets it) writes ``2026-01-02 03:04:05.12345+00`` (trailing zeros of the fraction
    dropped, the fraction too when it is zero); SQLite holds Django's naive UTC
    ``2026-01-02 03:04:05.123450``. ``datetime.isoformat()`` writes six digits, or none
    for a zero fraction; this does the same, so the result equals ``iso(datetime)``.
    """
    if value is None:
        return None
    text = value.replace(" ", "T", 1)
    if text.endswith("+00:00"):
        text = text[:-6]
    elif text.endswith("+00"):
        text = text[:-3]
    head, dot, fraction = text.partition(".")
    if dot:
        text = f"{head}.{fraction.ljust(6, '0')}"
    return text + "+00:00"
