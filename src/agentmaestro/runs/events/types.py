from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentmaestro.common.time import iso


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    run_id: uuid.UUID
    seq: int
    type: str
    version: int
    payload: dict[str, Any]
    created_at: datetime

    def as_frame(self) -> dict[str, Any]:
        """The event as clients see it, on the WebSocket and in the REST API."""
        return {
            "type": "event",
            "run_id": str(self.run_id),
            "seq": self.seq,
            "event_type": self.type,
            "version": self.version,
            "payload": self.payload,
            "created_at": iso(self.created_at),
        }
