"""The outbox and inbox tables every service carries in its own schema, and the store that
reads and writes them within the caller's session."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from agritrace_kernel.events.model import Event

event_metadata = sa.MetaData()

outbox = sa.Table(
    "event_outbox",
    event_metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("event_id", sa.String(32), nullable=False, unique=True),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("name", sa.String(80), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("trace_context", sa.Text(), nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_event_outbox_unpublished", "published_at", "id"),
)

inbox = sa.Table(
    "event_inbox",
    event_metadata,
    sa.Column("consumer", sa.String(80), primary_key=True),
    sa.Column("event_id", sa.String(32), primary_key=True),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
)


def create_event_tables(connection: sa.Connection) -> None:
    """For a service's first Alembic migration: `create_event_tables(op.get_bind())`."""
    event_metadata.create_all(connection, tables=[outbox, inbox])


class EventStore:
    """Outbox writes and inbox claims inside one session (one transaction)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def append_outbox(self, event: Event) -> None:
        self._session.execute(outbox.insert().values(**_outbox_row(event)))

    def append_outbox_many(self, events: Sequence[Event]) -> None:
        """Many events in one statement (a multi-row INSERT), in order."""
        if events:
            self._session.execute(outbox.insert(), [_outbox_row(event) for event in events])

    def claim(self, consumer: str, event_id: str) -> bool:
        """Records that `consumer` handles `event_id`; False if it already did (a duplicate).
        The claim commits or rolls back with the handler's own changes."""
        inserted = self._session.execute(
            _claim_statement(self._session.get_bind().dialect.name),
            {"consumer": consumer, "event_id": event_id, "handled_at": datetime.now(UTC)})
        return inserted.first() is not None


@functools.cache
def _claim_statement(dialect: str) -> ReturningInsert[tuple[str]]:
    """An inbox claim: ON CONFLICT DO NOTHING, one round trip, no savepoint around an INSERT
    that may fail (the settings accept PostgreSQL and SQLite only; both have it). RETURNING
    says whether a row went in: the drivers' rowcount is -1 for an INSERT. Built once per
    dialect: every event a consumer handles claims."""
    return upsert_insert(dialect)(inbox).on_conflict_do_nothing().returning(inbox.c.event_id)


Upsert = postgresql.Insert | sqlite.Insert


def upsert_insert(dialect: str) -> Callable[[sa.Table], Upsert]:
    """The dialect's INSERT with ON CONFLICT (the settings accept PostgreSQL and SQLite only;
    both have it)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _outbox_row(event: Event) -> dict[str, object]:
    return {
        "event_id": event.event_id,
        "source": event.source,
        "name": event.name,
        "payload": json.dumps(event.payload, ensure_ascii=False, sort_keys=True),
        "trace_context": json.dumps(event.trace_context),
        "occurred_at": event.occurred_at,
    }


def row_to_event(row: sa.Row[tuple[object, ...]]) -> Event:
    mapping = row._mapping
    occurred_at = mapping["occurred_at"]
    assert isinstance(occurred_at, datetime)
    if occurred_at.tzinfo is None:  # SQLite drops the zone; we always store UTC
        occurred_at = occurred_at.replace(tzinfo=UTC)
    return Event(
        source=str(mapping["source"]),
        name=str(mapping["name"]),
        payload=json.loads(str(mapping["payload"])),
        event_id=str(mapping["event_id"]),
        occurred_at=occurred_at,
        trace_context=json.loads(str(mapping["trace_context"])),
    )


def fetch_unpublished(session: Session, limit: int) -> Sequence[sa.Row[tuple[object, ...]]]:
    query = (
        sa.select(outbox)
        .where(outbox.c.published_at.is_(None))
        .order_by(outbox.c.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Several replicas may relay; each row goes to exactly one of them.
        query = query.with_for_update(skip_locked=True)
    return session.execute(query).all()


def mark_published(session: Session, ids: Sequence[int]) -> None:
    session.execute(
        outbox.update().where(outbox.c.id.in_(ids)).values(published_at=datetime.now(UTC))
    )


def count_unpublished(session: Session) -> int:
    return int(
        session.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        ).scalar_one()
    )


def log_sizes(session: Session, after: int, limit: int) -> list[tuple[int, int]]:
    """(id, payload bytes) of the outbox rows after position `after`, in id order: what a page
    of the event log can hold is decided before any payload is read."""
    if session.get_bind().dialect.name == "postgresql":
        size = sa.func.octet_length(outbox.c.payload)  # from the TOAST header, no detoasting
    else:
        size = sa.func.length(sa.cast(outbox.c.payload, sa.LargeBinary))  # UTF-8 bytes
    rows = session.execute(
        sa.select(outbox.c.id, size).where(outbox.c.id > after).order_by(outbox.c.id)
        .limit(limit)
    ).all()
    return [(int(ident), int(length or 0)) for ident, length in rows]


def fetch_log(session: Session, after: int, last: int) -> Sequence[sa.Row[tuple[object, ...]]]:
    """The event log: outbox rows with `after` < id <= `last` in id order, published or not
    (the relay marks rows, it never deletes them)."""
    return session.execute(
        sa.select(outbox).where(outbox.c.id > after, outbox.c.id <= last).order_by(outbox.c.id)
    ).all()


def newest_position(session: Session) -> int:
    """The id of the newest outbox row; 0 when there is none."""
    return int(session.execute(sa.select(sa.func.max(outbox.c.id))).scalar_one() or 0)
