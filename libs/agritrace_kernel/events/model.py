"""The event envelope, free of any framework."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    """A past-tense fact (`subject_registered`) from a source service, with a unique id so
    consumers can drop re-deliveries, and the trace context of the operation that caused it."""

    source: str
    name: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    trace_context: dict[str, str] = field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        return f"{self.source}.{self.name}"

    def to_wire(self) -> dict[str, Any]:
        """JSON-safe form carried by the bus."""
        return {
            "event_id": self.event_id,
            "source": self.source,
            "name": self.name,
            "occurred_at": self.occurred_at.isoformat(),
            "trace_context": dict(self.trace_context),
            "payload": self.payload,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Event:
        return cls(
            source=str(data["source"]),
            name=str(data["name"]),
            payload=dict(data["payload"]),
            event_id=str(data["event_id"]),
            occurred_at=datetime.fromisoformat(str(data["occurred_at"])),
            trace_context={str(k): str(v) for k, v in dict(data.get("trace_context", {})).items()},
        )
