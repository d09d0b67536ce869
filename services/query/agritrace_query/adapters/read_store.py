"""SELECTs over the read model: the scan path's point queries (PointOriginReader, one round
trip each, no ORM session) and what traces and statistics read inside a read unit of work
(SqlAlchemyReadStore). Every many-batch read is one statement per call (`= ANY(array)`
on PostgreSQL, IN lists of at most 900 on SQLite)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from agritrace_kernel.db import KeyedSelect, PointQuery, as_utc
from agritrace_query.adapters import orm
from agritrace_query.domain.graph import (
    BatchInfo,
    LineageLink,
    ShipmentLink,
    SubjectInfo,
    TransformationLink,
)
from agritrace_query.domain.origin import BatchOrigin, Certificate, CodeFacts, Inspections
from agritrace_query.domain.statistics import COUNTERS, Period, Rollup

_b = orm.batches.c
_c = orm.codes.c
_s = orm.subjects.c
_sh = orm.shipments.c
_t = orm.transformation_inputs.c

_ORIGIN_COLUMNS = (
    _b.batch_id, _b.product_code, _b.product_name, _b.category, _b.subject_division,
    _b.origin_division, _b.production_date, _b.certificate, _b.flags, _b.inspections_passed,
    _b.inspections_failed, _b.last_inspection_result, _b.last_inspection_at, _s.name,
)


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(part for part in (text or "").split(",") if part)


def _date(value: Any) -> date:
    # SQLite through the raw driver hands dates back as ISO text.
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def utc(moment: datetime) -> datetime:
    """A bound timestamp in UTC: SQLite stores timestamps as text without their zone, so
    every comparison must use the zone they were written in."""
    return moment.astimezone(UTC)


# A row without created_at holds only facts that arrived before the batch did.
_COMPLETE_BATCH = _b.created_at.is_not(None)


class PointOriginReader:
    """GetOriginInfo's reads on a dedicated autocommit engine, one indexed point query each: a
    code's own row (state and batch: the cheapest, for a process that may hold the batch's
    view already), a code with its batch's origin (for one that holds nothing: one round
    trip), or a batch's origin alone."""

    def __init__(self, engine: Engine) -> None:
        self._code = PointQuery(
            engine, sa.select(_c.state, _c.batch_id).where(_c.code == sa.bindparam("code")))
        # The batch's columns come as one JSON text, decoded only when the scan needs them.
        as_array = (sa.func.json_build_array if engine.dialect.name == "postgresql"
                    else sa.func.json_array)
        self._code_origin = PointQuery(
            engine, sa.select(_c.state, _c.batch_id, sa.case(
                (_b.batch_id.is_not(None), sa.cast(as_array(*_ORIGIN_COLUMNS), sa.Text))))
            .select_from(orm.codes.outerjoin(orm.batches, sa.and_(
                _b.batch_id == _c.batch_id, _COMPLETE_BATCH)).outerjoin(
                orm.subjects, _s.subject_id == _b.subject_id))
            .where(_c.code == sa.bindparam("code")))
        self._batch = PointQuery(
            engine, sa.select(*_ORIGIN_COLUMNS)
            .select_from(orm.batches.outerjoin(orm.subjects, _s.subject_id == _b.subject_id))
            .where(_b.batch_id == sa.bindparam("batch_id"), _COMPLETE_BATCH))

    def code_facts(self, code: str) -> CodeFacts | None:
        rows = self._code.rows(code=code)
        return _code_facts(code, *rows[0]) if rows else None

    def code_origin(self, code: str
                    ) -> tuple[CodeFacts, Callable[[], BatchOrigin | None]] | None:
        rows = self._code_origin.rows(code=code)
        if not rows:
            return None
        state, batch_id, origin = rows[0]
        return (_code_facts(code, state, batch_id),
                functools.partial(_batch_origin_of_array, origin))

    def batch_origin(self, batch_id: str) -> BatchOrigin | None:
        rows = self._batch.rows(batch_id=batch_id)
        return _batch_origin(rows[0] if rows else None)


def _code_facts(code: str, state: Any, batch_id: Any) -> CodeFacts:
    """A code's facts of its row's state and batch columns (no batch: "")."""
    return CodeFacts(code, str(state), str(batch_id or ""))


def _batch_origin_of_array(array: str | None) -> BatchOrigin | None:
    """_batch_origin of the columns as the JSON array text the code's query selects."""
    return _batch_origin(json.loads(array) if array is not None else None)


def _batch_origin(row: Sequence[Any] | None) -> BatchOrigin | None:
    """A batch's origin from _ORIGIN_COLUMNS' values (None for no row)."""
    if row is None:
        return None
    (batch, product_code, product_name, category, producer_division, origin_division,
     production_date, certificate, flags, passed, failed, last_result, last_at,
     producer_name) = row
    return BatchOrigin(
        batch_id=batch, product_code=product_code, product_name=product_name,
        category=category, producer_name=producer_name or "",
        producer_division=producer_division, origin_division=origin_division,
        production_date=_date(production_date),
        certificate=Certificate.from_json(json.loads(certificate)) if certificate else None,
        inspections=Inspections(int(passed or 0), int(failed or 0), last_result or "",
                                _moment(last_at)),
        flags=_split(flags))


def _batch_info(row: Sequence[Any]) -> BatchInfo:
    """A BatchInfo of _BATCHES' row."""
    (batch_id, subject_id, subject_division, product_code, product_name, category, quantity,
     unit, production_date, origin_division, flags) = row
    return BatchInfo(batch_id, subject_id, subject_division, product_code, product_name,
                     category, quantity, unit, _date(production_date), origin_division,
                     _split(flags))


# What a trace reads, many batches or subjects at once (see KeyedSelect).
_BATCHES = KeyedSelect(
    sa.select(_b.batch_id, _b.subject_id, _b.subject_division, _b.product_code,
              _b.product_name, _b.category, _b.quantity, _b.unit, _b.production_date,
              _b.origin_division, _b.flags).where(_b.created_at.is_not(None)), _b.batch_id)
_SUBJECTS = KeyedSelect(sa.select(_s.subject_id, _s.name, _s.kind, _s.division_code),
                        _s.subject_id)
_SHIPMENTS = KeyedSelect(
    sa.select(_sh.shipment_id, _sh.batch_id, _sh.seller_subject_id, _sh.buyer_subject_id,
              _sh.quantity, _sh.unit, _sh.ship_time, _sh.received_at)
    .where(_sh.ship_time.is_not(None)), _sh.batch_id)
_TRANSFORMATION_COLUMNS = (_t.transformation_id, _t.input_batch_id, _t.output_batch_id,
                           _t.subject_id, _t.quantity, _t.unit, _t.occurred_at)
_TRANSFORMATIONS_FROM = KeyedSelect(sa.select(*_TRANSFORMATION_COLUMNS), _t.input_batch_id)
_TRANSFORMATIONS_INTO = KeyedSelect(sa.select(*_TRANSFORMATION_COLUMNS), _t.output_batch_id)


def _lineage_statement(by_parent: bool) -> tuple[sa.Select[Any], sa.ColumnElement[str]]:
    """(parent batch, child batch) pairs linked by code lineage, and the column a look-up
    matches its batches on. Built once: a trace asks at every level."""
    parent = orm.codes.alias("parent")
    child = orm.codes.alias("child")
    lineage = orm.code_lineage.c
    given, other = (parent, child) if by_parent else (child, parent)
    statement = (
        sa.select(parent.c.batch_id, child.c.batch_id).distinct()
        .select_from(orm.code_lineage
                     .join(parent, parent.c.code == lineage.parent_code)
                     .join(child, child.c.code == lineage.child_code))
        .where(other.c.batch_id != ""))
    return statement, given.c.batch_id


_LINEAGE_BY_PARENT = KeyedSelect(*_lineage_statement(True))
_LINEAGE_BY_CHILD = KeyedSelect(*_lineage_statement(False))


def prefix_of(column: sa.ColumnElement[str], length: int) -> sa.ColumnElement[str]:
    """The first `length` characters, with the length inlined: PostgreSQL only groups by an
    expression it can see is the selected one, and two bound parameters are not."""
    return sa.func.substr(column, sa.literal_column("1"), sa.literal_column(str(int(length))))


def _under(column: sa.ColumnElement[str], prefix: str) -> sa.ColumnElement[bool]:
    return column.startswith(prefix) if prefix else sa.true()


class SqlAlchemyReadStore:
    """The read model inside one read transaction (QueryReads)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- traces -----------------------------------------------------------------------------

    def code_batch(self, code: str) -> str | None:
        found: str | None = self.session.scalar(sa.select(_c.batch_id).where(_c.code == code))
        return found

    def batch(self, batch_id: str) -> BatchInfo | None:
        return self.batches([batch_id]).get(batch_id)

    def batches(self, batch_ids: Sequence[str]) -> dict[str, BatchInfo]:
        return {row[0]: _batch_info(row) for row in _BATCHES.rows(self.session, batch_ids)}

    def subjects(self, subject_ids: Sequence[str]) -> dict[str, SubjectInfo]:
        return {subject_id: SubjectInfo(subject_id, name, kind, division_code)
                for subject_id, name, kind, division_code
                in _SUBJECTS.rows(self.session, subject_ids)}

    def shipments_of(self, batch_ids: Sequence[str]) -> list[ShipmentLink]:
        return [ShipmentLink(shipment_id, batch_id, seller, buyer, quantity, unit,
                             as_utc(ship_time), as_utc(received_at) if received_at else None)
                for shipment_id, batch_id, seller, buyer, quantity, unit, ship_time, received_at
                in _SHIPMENTS.rows(self.session, batch_ids)]

    def _transformations(self, select: KeyedSelect,
                         batch_ids: Sequence[str]) -> list[TransformationLink]:
        return [TransformationLink(transformation_id, input_batch_id, output_batch_id,
                                   subject_id, quantity, unit, as_utc(occurred_at))
                for (transformation_id, input_batch_id, output_batch_id, subject_id, quantity,
                     unit, occurred_at) in select.rows(self.session, batch_ids)]

    def transformations_from(self, batch_ids: Sequence[str]) -> list[TransformationLink]:
        return self._transformations(_TRANSFORMATIONS_FROM, batch_ids)

    def transformations_into(self, batch_ids: Sequence[str]) -> list[TransformationLink]:
        return self._transformations(_TRANSFORMATIONS_INTO, batch_ids)

    def _lineage(self, select: KeyedSelect, batch_ids: Sequence[str]) -> list[LineageLink]:
        return [LineageLink(parent, child) for parent, child in select.rows(self.session, batch_ids)
                if parent != child]

    def lineage_children(self, batch_ids: Sequence[str]) -> list[LineageLink]:
        return self._lineage(_LINEAGE_BY_PARENT, batch_ids)

    def lineage_parents(self, batch_ids: Sequence[str]) -> list[LineageLink]:
        return self._lineage(_LINEAGE_BY_CHILD, batch_ids)

    # -- statistics -------------------------------------------------------------------------

    def rollup(self, division_code: str, group_length: int, period: Period) -> Rollup:
        def grouped(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
            return prefix_of(column, group_length)

        subjects = orm.subjects.c
        registered = self.session.execute(
            sa.select(grouped(subjects.division_code), sa.func.count())
            .where(_under(subjects.division_code, division_code),
                   subjects.registered_at < utc(period.end_time))
            .group_by(grouped(subjects.division_code))).all()
        activity = orm.subject_activity.c
        active = self.session.execute(
            sa.select(grouped(activity.division_code),
                      sa.func.count(sa.distinct(activity.subject_id)))
            .where(_under(activity.division_code, division_code),
                   activity.day.between(period.start, period.end))
            .group_by(grouped(activity.division_code))).all()
        counts = orm.daily_counts.c
        counters = self.session.execute(
            sa.select(grouped(counts.division_code), counts.metric, sa.func.sum(counts.count))
            .where(_under(counts.division_code, division_code),
                   counts.day.between(period.start, period.end),
                   counts.metric.in_(COUNTERS))
            .group_by(grouped(counts.division_code), counts.metric)).all()
        return Rollup(
            registered={row[0]: int(row[1]) for row in registered},
            active={row[0]: int(row[1]) for row in active},
            counters={(row[0], row[1]): int(row[2]) for row in counters})

    def active_subjects(self, division_code: str, period: Period) -> int:
        activity = orm.subject_activity.c
        found = self.session.scalar(
            sa.select(sa.func.count(sa.distinct(activity.subject_id)))
            .where(_under(activity.division_code, division_code),
                   activity.day.between(period.start, period.end)))
        return int(found or 0)
