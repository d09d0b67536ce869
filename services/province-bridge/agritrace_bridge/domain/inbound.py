"""Internal-trace records on their way in: kept in the bridge's inbox from the moment they are
read until flow answered for them (store and forward)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from agritrace_bridge.contract import TraceRecord

TRACE_CURSOR = "trace_records"


class Delivery(StrEnum):
    PENDING = "PENDING"
    # flow stored it, or already held it (a resend after a crash).
    DELIVERED = "DELIVERED"
    # flow refused it (e.g. an unknown batch, a changed record); kept for an operator.
    REFUSED = "REFUSED"


@dataclass(frozen=True)
class InboxRecord:
    seq: int
    record: TraceRecord
    attempts: int = 0


def content_of(record: TraceRecord) -> tuple[str, str]:
    """The stored form of a record and its hash: a record changed on the platform comes again
    with the same id and another hash, and is kept as a new row."""
    content = record.model_dump_json()
    return content, hashlib.sha256(content.encode()).hexdigest()


@dataclass(frozen=True)
class CaptureOutcome:
    """flow's answer for one record: STORED, REPLAYED or REFUSED (with the reason)."""

    outcome: str
    error: str = ""

    @property
    def delivery(self) -> Delivery:
        return Delivery.REFUSED if self.outcome == "REFUSED" else Delivery.DELIVERED
