"""Render docs/events.md from the contracts, so the reference cannot drift from the code."""

from __future__ import annotations

import json
from pathlib import Path

from agentmaestro.runs.events.contracts import EventRegistry, registry

DOC_PATH = Path(__file__).resolve().parents[4] / "docs" / "events.md"

HEADER = """\
# Run events

<!-- Generated from src/agentmaestro/runs/events/contracts.py by
     `./dev eventdocs`. Do not edit by hand: a test fails when this file is stale. -->

Every change to a run is recorded as an immutable event in the run's log. An event is

| field | meaning |
|---|---|
| `seq` | position in the run's log: 1, 2, 3, … with no gaps and no repeats |
| `type` | one of the types below |
| `version` | the version of the type's payload contract |
| `payload` | a JSON object that matches the contract of `type` at `version` |
| `created_at` | when the event was committed (ISO 8601, UTC) |

On the WebSocket and in the REST API an event is a frame
`{"type": "event", "run_id", "seq", "event_type", "version", "payload", "created_at"}`.

## Versioning rules

* Writers always write the newest version of a type.
* Readers never see an old version: stored payloads of older versions are *upcast* on
  read, one version at a time (v1 → v2 → …), by functions registered beside the
  contracts. Stored rows are never rewritten.
* A change that only adds an optional field with a default keeps the version.
  Renaming or removing a field, changing its type or meaning, or adding a required
  field makes a new version, with an upcaster from the previous one. A version
  without an upcaster to the next fails at import.
* Types are never reused for a different meaning; a type that is no longer written
  keeps its contract so old logs still read.
* Payloads are closed: unknown fields are rejected when writing.

## Types
"""


def render(events: EventRegistry = registry) -> str:
    parts = [HEADER]
    for name in sorted(events.types):
        event_type = events.types[name]
        parts.append(f"\n### `{name}` (current version {event_type.current_version})\n")
        if event_type.description:
            parts.append(f"\n{event_type.description}\n")
        for version in sorted(event_type.versions, reverse=True):
            schema = event_type.versions[version].model_json_schema()
            schema.pop("title", None)
            label = "current" if version == event_type.current_version else "upcast on read"
            parts.append(f"\n#### v{version} ({label})\n\n```json\n")
            parts.append(json.dumps(schema, indent=2, sort_keys=True))
            parts.append("\n```\n")
    return "".join(parts)


def write(path: Path = DOC_PATH) -> bool:
    """Write the reference; return True if it changed."""
    text = render()
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True
