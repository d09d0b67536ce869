"""Idempotent retries: the first result of each client request id, so that a retry with the
same `request_id` returns it and changes nothing. Each service keeps its own `request_log`
table (defined here once) in its own schema."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agritrace_kernel.errors import FailedPrecondition, InvalidArgument

MAX_REQUEST_ID = 64


def check_request_id(request_id: str, field: str = "request_id") -> str:
    """A client request id, stripped; required (1-64 characters) so that retries are safe."""
    request_id = request_id.strip()
    if not request_id:
        raise InvalidArgument.of(field, "is required so that retries are safe")
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument.of(field, f"is longer than {MAX_REQUEST_ID} characters")
    return request_id


def fingerprint(*parts: object) -> str:
    """A stable digest of a request's input (JSON of `parts`, keys sorted)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class RequestRecord:
    """What a request id was first used for: the operation, a fingerprint of its input (a
    reused id with other input is refused), and the id of what it created."""

    operation: str
    fingerprint: str
    result_id: str


class RequestLog(Protocol):
    def find(self, request_id: str) -> RequestRecord | None: ...
    def record(self, request_id: str, record: RequestRecord) -> None: ...


def earlier_result(
    log: RequestLog, request_id: str, operation: str, request_fingerprint: str
) -> str | None:
    """The `result_id` of an earlier request with this id, or None when it is new. The same id
    used for another operation or other input is refused (REQUEST_ID_REUSED)."""
    record = log.find(request_id)
    if record is None:
        return None
    if record.operation != operation or record.fingerprint != request_fingerprint:
        raise FailedPrecondition(
            "request_id was already used for a different request", reason="REQUEST_ID_REUSED"
        )
    return record.result_id


def request_log_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "request_log",
        metadata,
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("operation", sa.String(40), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("result_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


class SqlAlchemyRequestLog:
    def __init__(self, session: Session, table: sa.Table) -> None:
        self.session = session
        self.table = table

    def find(self, request_id: str) -> RequestRecord | None:
        row = self.session.execute(
            sa.select(self.table).where(self.table.c.request_id == request_id)
        ).mappings().first()
        if row is None:
            return None
        return RequestRecord(row["operation"], row["fingerprint"], row["result_id"])

    def record(self, request_id: str, record: RequestRecord) -> None:
        self.session.execute(self.table.insert().values(
            request_id=request_id, operation=record.operation, fingerprint=record.fingerprint,
            result_id=record.result_id, created_at=datetime.now(UTC)))
