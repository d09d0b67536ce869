"""SQLAlchemy adapters of the bridge's unit of work."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agritrace_bridge.adapters import orm
from agritrace_bridge.contract import TraceRecord
from agritrace_bridge.domain.imports import Counts, ImportRun, Outcome, RecordOutcome, RunState
from agritrace_bridge.domain.inbound import CaptureOutcome, Delivery, InboxRecord, content_of
from agritrace_bridge.domain.outbound import QueuedRecord
from agritrace_bridge.domain.status import DirectionStatus, SecurityEvent, Severity
from agritrace_bridge.service_layer.observe import Direction
from agritrace_kernel.db import SqlAlchemyUnitOfWork, as_utc, bulk_insert, matching

TZ = orm.TZ
_r = orm.import_runs.c
_o = orm.import_outcomes.c


def _run_row(run: ImportRun) -> dict[str, Any]:
    return {"import_id": run.import_id, "province": run.province,
            "request_id": run.request_id, "state": run.state.value,
            "page_token": run.page_token, "pages": run.pages, "total_size": run.total_size,
            "created": run.counts.created, "merged": run.counts.merged,
            "conflict": run.counts.conflict, "rejected": run.counts.rejected,
            "attempts": run.attempts, "last_error": run.last_error[:1000],
            "started_at": run.started_at, "updated_at": run.updated_at,
            "finished_at": run.finished_at}


def _run(row: sa.RowMapping) -> ImportRun:
    return ImportRun(
        import_id=row["import_id"], province=row["province"], request_id=row["request_id"],
        state=RunState(row["state"]), started_at=as_utc(row["started_at"]),
        updated_at=as_utc(row["updated_at"]), page_token=row["page_token"],
        pages=row["pages"], total_size=row["total_size"],
        counts=Counts(row["created"], row["merged"], row["conflict"], row["rejected"]),
        finished_at=as_utc(row["finished_at"]) if row["finished_at"] else None,
        last_error=row["last_error"], attempts=row["attempts"])


class SqlAlchemyImports:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _one(self, query: sa.Select[Any]) -> ImportRun | None:
        row = self.session.execute(query).mappings().first()
        return _run(row) if row is not None else None

    def get(self, import_id: str) -> ImportRun | None:
        return self._one(sa.select(orm.import_runs).where(_r.import_id == import_id))

    def by_request(self, request_id: str) -> ImportRun | None:
        return self._one(sa.select(orm.import_runs).where(_r.request_id == request_id))

    def latest(self) -> ImportRun | None:
        return self._one(sa.select(orm.import_runs)
                         .order_by(_r.started_at.desc(), _r.import_id.desc()).limit(1))

    def add(self, run: ImportRun) -> None:
        self.session.execute(sa.insert(orm.import_runs).values(_run_row(run)))

    def save(self, run: ImportRun) -> None:
        self.session.execute(sa.update(orm.import_runs)
                             .where(_r.import_id == run.import_id).values(_run_row(run)))

    def known(self, import_id: str, source_record_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for condition in matching(self.session, _o.source_record_id, source_record_ids):
            found.update(self.session.execute(sa.select(_o.source_record_id).where(
                _o.import_id == import_id, condition)).scalars())
        return found

    def add_outcomes(self, import_id: str, outcomes: Sequence[RecordOutcome]) -> None:
        bulk_insert(self.session, orm.import_outcomes, [
            {"import_id": import_id, "source_record_id": o.source_record_id,
             "outcome": o.outcome.value, "subject_id": o.subject_id, "field": o.field[:200],
             "reason": o.reason[:1000]} for o in outcomes])

    def outcomes(self, import_id: str, after: str, limit: int,
                 only: Outcome | None = None) -> list[RecordOutcome]:
        query = (sa.select(orm.import_outcomes)
                 .where(_o.import_id == import_id, _o.source_record_id > after)
                 .order_by(_o.source_record_id).limit(limit))
        if only is not None:
            query = query.where(_o.outcome == only.value)
        return [RecordOutcome(row["source_record_id"], Outcome(row["outcome"]),
                              row["subject_id"], row["field"], row["reason"])
                for row in self.session.execute(query).mappings()]


_s = orm.direction_stats.c
# What waits in each direction, and since when: the queue's table, its "waiting" state and
# the column of the time a record started waiting.
_QUEUES = {
    Direction.INBOUND: (orm.trace_inbox, "PENDING", orm.trace_inbox.c.received_at),
    Direction.OUTBOUND: (orm.outbound_queue, "PENDING", orm.outbound_queue.c.enqueued_at),
}


class SqlAlchemySync:
    def __init__(self, session: Session) -> None:
        self.session = session

    def status(self, direction: Direction, now: datetime) -> DirectionStatus:
        depth, oldest, dead = 0, None, 0
        if direction in _QUEUES:
            table, waiting, since = _QUEUES[direction]
            depth, oldest = self.session.execute(
                sa.select(sa.func.count(), sa.func.min(since))
                .where(table.c.state == waiting)).one()
        if direction is Direction.OUTBOUND:
            dead = self.session.execute(
                sa.select(sa.func.count()).select_from(orm.dead_letters)).scalar_one()
        row = self.session.execute(sa.select(orm.direction_stats)
                                   .where(_s.direction == direction.value)).mappings().first()
        lag = max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest else 0.0
        if row is None:
            return DirectionStatus(queue_depth=depth, dead_letters=dead, lag_seconds=lag)
        return DirectionStatus(
            queue_depth=depth, dead_letters=dead, lag_seconds=lag,
            delivered=row["delivered"], errors=row["errors"],
            last_success_at=as_utc(row["last_success_at"]) if row["last_success_at"] else None,
            last_error=row["last_error"])

    def _ensure(self, direction: Direction) -> None:
        exists = self.session.execute(sa.select(_s.direction)
                                      .where(_s.direction == direction.value)).first()
        if exists is None:
            self.session.execute(sa.insert(orm.direction_stats)
                                 .values(direction=direction.value))

    def note_delivered(self, direction: Direction, count: int, now: datetime) -> None:
        self._ensure(direction)
        self.session.execute(sa.update(orm.direction_stats)
                             .where(_s.direction == direction.value)
                             .values(delivered=_s.delivered + count, last_success_at=now,
                                     last_error=""))

    def note_error(self, direction: Direction, error: str) -> None:
        self._ensure(direction)
        self.session.execute(sa.update(orm.direction_stats)
                             .where(_s.direction == direction.value)
                             .values(errors=_s.errors + 1, last_error=error[:1000]))


class SqlAlchemySecurity:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_request(self, request_id: str) -> SecurityEvent | None:
        row = self.session.execute(
            sa.select(orm.security_events)
            .where(orm.security_events.c.request_id == request_id)).mappings().first()
        if row is None:
            return None
        return SecurityEvent(
            event_id=row["event_id"], request_id=row["request_id"], category=row["category"],
            severity=Severity(row["severity"]), summary=row["summary"], details=row["details"],
            occur_time=as_utc(row["occur_time"]), recorded_at=as_utc(row["recorded_at"]),
            reported_by=row["reported_by"])

    def add(self, event: SecurityEvent) -> None:
        self.session.execute(sa.insert(orm.security_events).values(
            event_id=event.event_id, request_id=event.request_id, category=event.category,
            severity=event.severity.value, summary=event.summary, details=event.details,
            occur_time=event.occur_time, recorded_at=event.recorded_at,
            reported_by=event.reported_by))


_q = orm.outbound_queue.c
_d = orm.dead_letters.c
_RECORD_COLUMNS = ("record_id", "type", "occur_time", "subject_id", "payload", "enqueued_at")


def _queued(row: sa.RowMapping) -> QueuedRecord:
    return QueuedRecord(
        record_id=row["record_id"], type=row["type"], occur_time=as_utc(row["occur_time"]),
        subject_id=row["subject_id"], payload=json.loads(row["payload"]),
        enqueued_at=as_utc(row["enqueued_at"]), attempts=row["attempts"],
        last_error=row["last_error"])


class SqlAlchemyOutbound:
    def __init__(self, session: Session) -> None:
        self.session = session

    def enqueue(self, record: QueuedRecord, now: datetime) -> bool:
        for table in (orm.outbound_queue, orm.dead_letters):
            if self.session.execute(sa.select(table.c.record_id)
                                    .where(table.c.record_id == record.record_id)).first():
                return False
        self.session.execute(sa.insert(orm.outbound_queue).values(
            record_id=record.record_id, type=record.type, occur_time=record.occur_time,
            subject_id=record.subject_id,
            payload=json.dumps(dict(record.payload), ensure_ascii=False, sort_keys=True),
            enqueued_at=record.enqueued_at, state="PENDING", attempts=0,
            next_attempt_at=now))
        return True

    def due(self, now: datetime, limit: int) -> list[QueuedRecord]:
        rows = self.session.execute(
            sa.select(orm.outbound_queue)
            .where(_q.state == "PENDING", _q.next_attempt_at <= now)
            .order_by(_q.next_attempt_at, _q.enqueued_at, _q.record_id).limit(limit))
        return [_queued(row) for row in rows.mappings()]

    def next_due(self) -> datetime | None:
        due = self.session.execute(sa.select(sa.func.min(_q.next_attempt_at))
                                   .where(_q.state == "PENDING")).scalar_one()
        return as_utc(due) if due is not None else None

    def delivered(self, record_id: str, now: datetime) -> None:
        self.session.execute(sa.update(orm.outbound_queue).where(_q.record_id == record_id)
                             .values(state="DELIVERED", delivered_at=now, last_error=""))

    def retry_later(self, record_id: str, attempts: int, at: datetime, error: str) -> None:
        self.session.execute(sa.update(orm.outbound_queue).where(_q.record_id == record_id)
                             .values(attempts=attempts, next_attempt_at=at,
                                     last_error=error[:1000]))

    def dead(self, record_id: str, attempts: int, error: str, now: datetime) -> None:
        columns = [_q[name] for name in _RECORD_COLUMNS]
        self.session.execute(orm.dead_letters.insert().from_select(
            [*_RECORD_COLUMNS, "attempts", "last_error", "dead_at"],
            sa.select(*columns, sa.literal(attempts), sa.literal(error[:1000]),
                      sa.literal(now, TZ)).where(_q.record_id == record_id)))
        self.session.execute(sa.delete(orm.outbound_queue).where(_q.record_id == record_id))

    def replay(self, record_ids: Sequence[str], now: datetime) -> int:
        chosen = _d.record_id.in_(list(record_ids)) if record_ids else sa.true()
        ids = list(self.session.execute(sa.select(_d.record_id).where(chosen)).scalars())
        if not ids:
            return 0
        columns = [_d[name] for name in _RECORD_COLUMNS]
        self.session.execute(orm.outbound_queue.insert().from_select(
            [*_RECORD_COLUMNS, "state", "attempts", "next_attempt_at", "last_error"],
            sa.select(*columns, sa.literal("PENDING"), sa.literal(0), sa.literal(now, TZ),
                      sa.literal("")).where(_d.record_id.in_(ids))))
        self.session.execute(sa.delete(orm.dead_letters).where(_d.record_id.in_(ids)))
        return len(ids)


_i = orm.trace_inbox.c
_c = orm.cursors.c


class SqlAlchemyInbox:
    def __init__(self, session: Session) -> None:
        self.session = session

    def cursor(self, name: str) -> str:
        value = self.session.execute(sa.select(_c.value).where(_c.name == name)).scalar()
        return value or ""

    def set_cursor(self, name: str, value: str, now: datetime) -> None:
        updated = self.session.execute(sa.update(orm.cursors).where(_c.name == name)
                                       .values(value=value, updated_at=now))
        if not updated.rowcount:  # type: ignore[attr-defined]
            self.session.execute(sa.insert(orm.cursors).values(name=name, value=value,
                                                               updated_at=now))

    def add(self, records: Sequence[TraceRecord], now: datetime) -> int:
        rows: dict[tuple[str, str], str] = {}
        for record in records:
            content, digest = content_of(record)
            rows[(record.record_id, digest)] = content
        if not rows:
            return 0
        known: set[tuple[str, str]] = set()
        for condition in matching(self.session, _i.record_id, [key[0] for key in rows]):
            known.update((r, h) for r, h in self.session.execute(
                sa.select(_i.record_id, _i.content_hash).where(condition)))
        new = [{"record_id": record_id, "content_hash": digest, "content": content,
                "received_at": now, "state": Delivery.PENDING.value}
               for (record_id, digest), content in rows.items()
               if (record_id, digest) not in known]
        if new:
            self.session.execute(sa.insert(orm.trace_inbox), new)
        return len(new)

    def pending(self, limit: int) -> list[InboxRecord]:
        rows = self.session.execute(
            sa.select(_i.seq, _i.content, _i.attempts)
            .where(_i.state == Delivery.PENDING.value).order_by(_i.seq).limit(limit))
        return [InboxRecord(seq, TraceRecord.model_validate_json(content), attempts)
                for seq, content, attempts in rows]

    def settle(self, outcomes: Sequence[tuple[int, CaptureOutcome]], now: datetime) -> None:
        if outcomes:
            self.session.execute(
                sa.update(orm.trace_inbox).where(_i.seq == sa.bindparam("b_seq")).values(
                    state=sa.bindparam("b_state"), outcome=sa.bindparam("b_outcome"),
                    error=sa.bindparam("b_error"), delivered_at=now,
                    attempts=_i.attempts + 1).execution_options(synchronize_session=False),
                [{"b_seq": seq, "b_state": o.delivery.value, "b_outcome": o.outcome,
                  "b_error": o.error[:1000]} for seq, o in outcomes])

    def attempted(self, seqs: Sequence[int], error: str) -> None:
        self.session.execute(sa.update(orm.trace_inbox).where(_i.seq.in_(list(seqs)))
                             .values(attempts=_i.attempts + 1, error=error[:1000]))


class SqlAlchemyBridgeUnitOfWork(SqlAlchemyUnitOfWork):
    imports: SqlAlchemyImports
    sync: SqlAlchemySync
    security: SqlAlchemySecurity
    outbound: SqlAlchemyOutbound
    inbox: SqlAlchemyInbox

    def _open(self, session: Session) -> None:
        self.imports = SqlAlchemyImports(session)
        self.sync = SqlAlchemySync(session)
        self.security = SqlAlchemySecurity(session)
        self.outbound = SqlAlchemyOutbound(session)
        self.inbox = SqlAlchemyInbox(session)
