from __future__ import annotations

from datetime import datetime


def iso(value: datetime | None) -> str | None:
    """The one textual form of a timestamp in events and snapshots (UTC, ISO 8601)."""
    return None if value is None else value.isoformat()
