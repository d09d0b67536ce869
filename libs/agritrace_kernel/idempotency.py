"""Idempotent retries: the first result of each client request id, so that a retry with the
same `request_id` returns it and changes nothing. Each service keeps its own `request_log`
table (defined here once) in its own schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session


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
