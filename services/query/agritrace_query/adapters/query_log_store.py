"""The query log table: appending chained entries (the writer thread), reading pages, ranges
and scan counts (the use cases). Nothing here updates or deletes an entry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from agritrace_kernel.db import LibpqTransaction, as_utc, bulk_insert_values, copy_line
from agritrace_query.adapters import orm
from agritrace_query.adapters.read_store import prefix_of, utc
from agritrace_query.domain.query_log import (
    GENESIS,
    LogEntry,
    QueryRecord,
    chain,
)
from agritrace_query.domain.statistics import Period
from agritrace_query.service_layer.ports import LogFilter

_q = orm.query_log.c
# One PostgreSQL advisory lock for the log: every replica's writer chains onto the same tail.
LOG_LOCK_KEY = 0x71756572796C6F67 & 0x7FFFFFFFFFFFFFFF  # "querylog"

_RECORD_FIELDS = ("asker", "role", "asker_jurisdiction", "rpc", "target", "target_division",
                  "scope", "outcome", "place")


# The stored columns of an entry, in the order both ways of appending write them.
_LOG_COLUMNS = ("seq", "logged_at", *_RECORD_FIELDS, "prev_hash", "entry_hash")


def _chained(records: Sequence[QueryRecord], tail: Sequence[Any] | None) -> list[LogEntry]:
    """`records` chained onto the log's newest entry, (seq, entry_hash) or None if empty."""
    last_seq, last_hash = (int(tail[0]), str(tail[1])) if tail else (0, GENESIS)
    return chain(records, last_seq, last_hash)


def _stored(entry: LogEntry) -> tuple[Any, ...]:
    """An entry's values in _LOG_COLUMNS order."""
    record = entry.record
    return (entry.seq, utc(record.logged_at),
            *(getattr(record, name) for name in _RECORD_FIELDS),
            entry.prev_hash, entry.entry_hash)


def _entry(row: Any) -> LogEntry:
    record = QueryRecord(logged_at=as_utc(row.logged_at),
                         **{name: getattr(row, name) for name in _RECORD_FIELDS})
    return LogEntry(row.seq, record, row.prev_hash, row.entry_hash)


class SqlAlchemyQueryLog:
    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, records: Sequence[QueryRecord]) -> list[LogEntry]:
        """Chains `records` onto the log's newest entry and inserts them, in the session's
        transaction (the caller commits). On PostgreSQL the transaction first takes the log's
        advisory lock, so concurrent writers append one after the other; SQLite's write
        transactions are exclusive already."""
        if not records:
            return []
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(sa.select(sa.func.pg_advisory_xact_lock(LOG_LOCK_KEY)))
        entries = _chained(records, self.session.execute(
            sa.select(_q.seq, _q.entry_hash).order_by(_q.seq.desc()).limit(1)).first())
        bulk_insert_values(self.session, orm.query_log, _LOG_COLUMNS,
                           [_stored(entry) for entry in entries])
        return entries

    def page(self, selection: LogFilter, before_seq: int | None, limit: int) -> list[LogEntry]:
        conditions: list[sa.ColumnElement[bool]] = []
        if before_seq is not None:
            conditions.append(_q.seq < before_seq)
        if selection.asker:
            conditions.append(_q.asker == selection.asker)
        if selection.rpc:
            conditions.append(_q.rpc == selection.rpc)
        if selection.division_prefix:
            conditions.append(_q.target_division.startswith(selection.division_prefix))
        if selection.start_time is not None:
            conditions.append(_q.logged_at >= utc(selection.start_time))
        if selection.end_time is not None:
            conditions.append(_q.logged_at < utc(selection.end_time))
        rows = self.session.execute(
            sa.select(orm.query_log).where(*conditions).order_by(_q.seq.desc()).limit(limit))
        return [_entry(row) for row in rows]

    def entries(self, first_seq: int, last_seq: int) -> list[LogEntry]:
        rows = self.session.execute(
            sa.select(orm.query_log).where(_q.seq.between(first_seq, last_seq))
            .order_by(_q.seq))
        return [_entry(row) for row in rows]

    def newest_seq(self) -> int:
        return int(self.session.scalar(sa.select(sa.func.max(_q.seq))) or 0)

    def scans(self, division_code: str, group_length: int, period: Period) -> dict[str, int]:
        grouped = prefix_of(_q.target_division, group_length)
        conditions = [_q.rpc == "GetOriginInfo", _q.logged_at >= utc(period.start_time),
                      _q.logged_at < utc(period.end_time),
                      sa.func.length(_q.target_division) >= group_length]
        if division_code:
            conditions.append(_q.target_division.startswith(division_code))
        rows = self.session.execute(
            sa.select(grouped, sa.func.count()).where(*conditions).group_by(grouped)).all()
        return {row[0]: int(row[1]) for row in rows}


_COPY_LOG = f"COPY query_log ({', '.join(_LOG_COLUMNS)}) FROM STDIN".encode()


class LibpqQueryLog:
    """SqlAlchemyQueryLog.append on PostgreSQL through libpq's blocking calls: the writer
    thread shares its server's GIL with the calls it logs, and a psycopg session's many
    GIL hand-offs per batch cost those calls more than the writing itself (measured: p99 of
    cached scans at 16 concurrent callers ~12 ms with the session, ~8 ms without writing)."""

    def __init__(self, transaction: LibpqTransaction) -> None:
        self.transaction = transaction

    def append(self, records: Sequence[QueryRecord]) -> list[LogEntry]:
        if not records:
            return []
        self.transaction.rows(b"SELECT pg_advisory_xact_lock($1)", [LOG_LOCK_KEY])
        tail = self.transaction.rows(
            b"SELECT seq, entry_hash FROM query_log ORDER BY seq DESC LIMIT 1")
        entries = _chained(records, tail[0] if tail else None)
        self.transaction.copy(_COPY_LOG, (copy_line(_stored(entry)) for entry in entries))
        return entries


class LibpqLogUnitOfWork:
    """The query log writer's unit of work on PostgreSQL (an autocommit engine)."""

    def __init__(self, engine: Engine) -> None:
        self._transaction = LibpqTransaction(engine)
        self.log = LibpqQueryLog(self._transaction)

    def __enter__(self) -> Self:
        self._transaction.__enter__()
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self._transaction.__exit__(exc_type, exc, traceback)

    def commit(self) -> None:
        self._transaction.commit()
