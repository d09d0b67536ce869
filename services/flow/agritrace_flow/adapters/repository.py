"""SQLAlchemy adapters of the flow ports."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from agritrace_flow.adapters import orm
from agritrace_flow.domain.model import (
    Activity,
    Batch,
    Certificate,
    CertificateBasis,
    EntryRefusal,
    InternalTrace,
    MarketEntry,
    Quantity,
    Shipment,
    Transformation,
    TransformationInput,
    TransformationKind,
    Unit,
)
from agritrace_flow.service_layer.ports import BatchFlags, HistoryEntry
from agritrace_kernel.db import (
    SqlAlchemyUnitOfWork,
    as_utc,
    bulk_insert,
    bulk_insert_values,
    matching,
)
from agritrace_kernel.idempotency import RequestRecord, SqlAlchemyRequestLog

_b = orm.batches.c
_ACTIVITIES = {activity.value: activity for activity in Activity}  # Activity(x), cheaper
_TRACE_COLUMNS = ("source_province", "source_record_id", "batch_id", "activity", "occurred_at",
                  "details", "interval_days", "passed")
_HISTORY_COLUMNS = ("batch_id", "occurred_at", "kind", "subject_id", "other_subject_id",
                    "record_id", "summary")
# json.dumps(..., ensure_ascii=False, sort_keys=True) without building an encoder per call.
_details_json = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def _quantity(amount: Any, unit: str) -> Quantity:
    return Quantity(Decimal(amount).quantize(Decimal("0.001")), Unit(unit))


def _codes(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def _batch_row(batch: Batch) -> dict[str, Any]:
    certificate = batch.certificate
    return {
        "batch_id": batch.batch_id, "subject_id": batch.subject_id,
        "subject_division": batch.subject_division, "product_code": batch.product_code,
        "product_name": batch.product_name, "category": batch.category,
        "amount": batch.quantity.amount, "unit": batch.quantity.unit.value,
        "production_date": batch.production_date, "origin_division": batch.origin_division,
        "certificate_id": certificate.certificate_id if certificate else None,
        "producer_name": certificate.producer_name if certificate else None,
        "contact_phone_masked": certificate.contact_phone_masked if certificate else None,
        "certificate_issue_date": certificate.issue_date if certificate else None,
        "commitment": certificate.commitment if certificate else None,
        "certificate_basis": certificate.basis.value if certificate else None,
        "test_result": certificate.test_result if certificate else None,
        "parent_batch_ids": " ".join(batch.parent_batch_ids), "flags": " ".join(batch.flags),
        "code_count": batch.code_count, "created_at": batch.created_at,
        "ended_at": batch.ended_at}


def _batch(row: sa.RowMapping) -> Batch:
    certificate = None
    if row["certificate_id"] is not None:
        certificate = Certificate(
            certificate_id=row["certificate_id"], producer_name=row["producer_name"],
            contact_phone_masked=row["contact_phone_masked"] or "",
            issue_date=row["certificate_issue_date"], commitment=row["commitment"],
            basis=CertificateBasis(row["certificate_basis"]),
            test_result=row["test_result"] or "")
    return Batch(
        batch_id=row["batch_id"], subject_id=row["subject_id"],
        subject_division=row["subject_division"], product_code=row["product_code"],
        product_name=row["product_name"], category=row["category"],
        quantity=_quantity(row["amount"], row["unit"]),
        production_date=row["production_date"], origin_division=row["origin_division"],
        certificate=certificate, parent_batch_ids=_codes(row["parent_batch_ids"]),
        flags=_codes(row["flags"]), code_count=row["code_count"],
        created_at=as_utc(row["created_at"]),
        ended_at=as_utc(row["ended_at"]) if row["ended_at"] else None)


def _shipment(row: sa.RowMapping) -> Shipment:
    return Shipment(
        shipment_id=row["shipment_id"], batch_id=row["batch_id"],
        seller_subject_id=row["seller_subject_id"], buyer_subject_id=row["buyer_subject_id"],
        codes=_codes(row["codes"]), quantity=_quantity(row["amount"], row["unit"]),
        ship_time=as_utc(row["ship_time"]), transport_document=row["transport_document"],
        received_at=as_utc(row["received_at"]) if row["received_at"] else None)


def _entry(row: sa.RowMapping) -> MarketEntry:
    return MarketEntry(
        entry_id=row["entry_id"], market_subject_id=row["market_subject_id"],
        admitted=row["admitted"],
        refusal=EntryRefusal(row["refusal"]) if row["refusal"] else None,
        reason=row["reason"], batch_id=row["batch_id"], code=row["code"],
        certificate_id=row["certificate_id"], check_time=as_utc(row["check_time"]))


def _trace(row: sa.RowMapping) -> InternalTrace:
    return InternalTrace(
        source_province=row["source_province"], source_record_id=row["source_record_id"],
        batch_id=row["batch_id"], activity=_ACTIVITIES[row["activity"]],
        occurred_at=as_utc(row["occurred_at"]), details=json.loads(row["details"]),
        interval_days=row["interval_days"], passed=row["passed"])


class SqlAlchemyFlowStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _rows(self, query: sa.Select[Any]) -> list[sa.RowMapping]:
        return list(self.session.execute(query).mappings().all())

    def _update_many(self, table: sa.Table, keys: tuple[str, ...], values: tuple[str, ...],
                     rows: Sequence[tuple[Any, ...]]) -> None:
        """UPDATEs of many rows (`keys` then `values` columns each): one statement joining
        the rows as arrays on PostgreSQL, an executemany elsewhere."""
        if not rows:
            return
        columns = keys + values
        dialect = self.session.get_bind().dialect
        if dialect.name == "postgresql":
            arrays = ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])"
                               for c in columns)
            self.session.execute(sa.text(
                f"UPDATE {table.name} AS t SET {', '.join(f'{c} = v.{c}' for c in values)} "
                f"FROM unnest({arrays}) AS v({', '.join(columns)}) "
                f"WHERE {' AND '.join(f't.{c} = v.{c}' for c in keys)}"),
                {c: [row[i] for row in rows] for i, c in enumerate(columns)})
            return
        statement = table.update().where(*(table.c[c] == sa.bindparam(f"b_{c}") for c in keys))
        self.session.execute(statement.values({c: sa.bindparam(f"b_{c}") for c in values}),
                             [{f"b_{c}": v for c, v in zip(columns, row, strict=True)}
                              for row in rows])

    # -- batches ----------------------------------------------------------------------------

    def add_batch(self, batch: Batch, codes: Sequence[str]) -> None:
        self.add_batches([(batch, codes)])

    def add_batches(self, batches: Sequence[tuple[Batch, Sequence[str]]]) -> None:
        bulk_insert(self.session, orm.batches, [_batch_row(batch) for batch, _ in batches])
        bulk_insert(self.session, orm.batch_codes,
                    [{"code": code, "batch_id": batch.batch_id}
                     for batch, codes in batches for code in codes])

    def get_batch(self, batch_id: str) -> Batch | None:
        rows = self._rows(sa.select(orm.batches).where(_b.batch_id == batch_id))
        return _batch(rows[0]) if rows else None

    def get_batches(self, batch_ids: Sequence[str]) -> dict[str, Batch]:
        return self._batches_by(_b.batch_id, batch_ids)

    def _batches_by(self, column: sa.Column[str], values: Sequence[str]) -> dict[str, Batch]:
        """The batches whose `column` is among `values`, by that value."""
        found: dict[str, Batch] = {}
        for condition in matching(self.session, column, list(values)):
            for row in self._rows(sa.select(orm.batches).where(condition)):
                found[row[column.name]] = _batch(row)
        return found

    def batch_by_certificate(self, certificate_id: str) -> Batch | None:
        rows = self._rows(sa.select(orm.batches).where(_b.certificate_id == certificate_id))
        return _batch(rows[0]) if rows else None

    def batches_by_certificate(self, certificate_ids: Sequence[str]) -> dict[str, Batch]:
        return self._batches_by(_b.certificate_id, certificate_ids)

    def batch_codes(self, batch_id: str) -> list[str]:
        return list(self.session.scalars(
            sa.select(orm.batch_codes.c.code).where(orm.batch_codes.c.batch_id == batch_id)
            .order_by(orm.batch_codes.c.code)))

    def set_flag_states(self, states: Sequence[tuple[str, Sequence[str], datetime | None]]
                        ) -> None:
        self._update_many(orm.batches, ("batch_id",), ("flags", "ended_at"),
                          [(batch_id, " ".join(flags), ended_at)
                           for batch_id, flags, ended_at in states])

    def batches_between(self, *, subject_id: str = "", product_code: str = "",
                        start: datetime | None = None,
                        end: datetime | None = None) -> list[Batch]:
        query = sa.select(orm.batches)
        if subject_id:
            query = query.where(_b.subject_id == subject_id)
        if product_code:
            query = query.where(_b.product_code == product_code)
        if start is not None:
            query = query.where(_b.created_at >= start)
        if end is not None:
            query = query.where(_b.created_at < end)
        return [_batch(row) for row in self._rows(query.order_by(_b.created_at, _b.batch_id))]

    # -- holdings ---------------------------------------------------------------------------

    def holding(self, batch_id: str, subject_id: str) -> Quantity | None:
        h = orm.holdings.c
        rows = self._rows(sa.select(orm.holdings).where(h.batch_id == batch_id,
                                                         h.subject_id == subject_id))
        return _quantity(rows[0]["amount"], rows[0]["unit"]) if rows else None

    def holdings(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Quantity]:
        h = orm.holdings.c
        wanted = set(keys)
        found: dict[tuple[str, str], Quantity] = {}
        for condition in matching(self.session, h.batch_id, sorted({b for b, _ in wanted})):
            for row in self._rows(sa.select(orm.holdings).where(condition)):
                key = (row["batch_id"], row["subject_id"])
                if key in wanted:
                    found[key] = _quantity(row["amount"], row["unit"])
        return found

    def put_holdings(self, new: Sequence[tuple[str, str, Quantity]],
                     changed: Sequence[tuple[str, str, Quantity]]) -> None:
        bulk_insert(self.session, orm.holdings, [
            {"batch_id": batch_id, "subject_id": subject_id, "amount": quantity.amount,
             "unit": quantity.unit.value} for batch_id, subject_id, quantity in new])
        self._update_many(orm.holdings, ("batch_id", "subject_id"), ("amount", "unit"),
                          [(batch_id, subject_id, quantity.amount, quantity.unit.value)
                           for batch_id, subject_id, quantity in changed])

    def set_holding(self, batch_id: str, subject_id: str, quantity: Quantity) -> None:
        h = orm.holdings.c
        updated = self.session.execute(
            orm.holdings.update().where(h.batch_id == batch_id, h.subject_id == subject_id)
            .values(amount=quantity.amount, unit=quantity.unit.value))
        if not updated.rowcount:  # type: ignore[attr-defined]
            self.session.execute(orm.holdings.insert().values(
                batch_id=batch_id, subject_id=subject_id, amount=quantity.amount,
                unit=quantity.unit.value))

    # -- shipments and entries --------------------------------------------------------------

    def add_shipment(self, shipment: Shipment) -> None:
        self.add_shipments([shipment])

    def add_shipments(self, shipments: Sequence[Shipment]) -> None:
        bulk_insert(self.session, orm.shipments, [{
            "shipment_id": s.shipment_id, "batch_id": s.batch_id,
            "seller_subject_id": s.seller_subject_id, "buyer_subject_id": s.buyer_subject_id,
            "codes": " ".join(s.codes), "amount": s.quantity.amount,
            "unit": s.quantity.unit.value, "ship_time": s.ship_time,
            "transport_document": s.transport_document, "received_at": s.received_at}
            for s in shipments])

    def get_shipment(self, shipment_id: str) -> Shipment | None:
        return self.get_shipments([shipment_id]).get(shipment_id)

    def get_shipments(self, shipment_ids: Sequence[str]) -> dict[str, Shipment]:
        found: dict[str, Shipment] = {}
        for condition in matching(self.session, orm.shipments.c.shipment_id,
                                  list(shipment_ids)):
            for row in self._rows(sa.select(orm.shipments).where(condition)):
                found[row["shipment_id"]] = _shipment(row)
        return found

    def shipments_of(self, batch_id: str) -> list[Shipment]:
        s = orm.shipments.c
        return [_shipment(row) for row in self._rows(
            sa.select(orm.shipments).where(s.batch_id == batch_id)
            .order_by(s.ship_time, s.shipment_id))]

    def mark_received(self, shipment_id: str, at: datetime) -> None:
        self.session.execute(orm.shipments.update()
                             .where(orm.shipments.c.shipment_id == shipment_id)
                             .values(received_at=at))

    def add_entry(self, entry: MarketEntry) -> None:
        self.session.execute(orm.market_entries.insert().values(
            entry_id=entry.entry_id, market_subject_id=entry.market_subject_id,
            admitted=entry.admitted, refusal=entry.refusal.value if entry.refusal else None,
            reason=entry.reason, batch_id=entry.batch_id, code=entry.code,
            certificate_id=entry.certificate_id, check_time=entry.check_time))

    def get_entry(self, entry_id: str) -> MarketEntry | None:
        rows = self._rows(sa.select(orm.market_entries)
                          .where(orm.market_entries.c.entry_id == entry_id))
        return _entry(rows[0]) if rows else None

    def entries_of(self, batch_id: str) -> list[MarketEntry]:
        e = orm.market_entries.c
        return [_entry(row) for row in self._rows(
            sa.select(orm.market_entries).where(e.batch_id == batch_id)
            .order_by(e.check_time, e.entry_id))]

    # -- transformations --------------------------------------------------------------------

    def add_transformation(self, transformation: Transformation) -> None:
        self.session.execute(orm.transformations.insert().values(
            transformation_id=transformation.transformation_id,
            subject_id=transformation.subject_id, kind=transformation.kind.value,
            output_batch_id=transformation.output_batch_id,
            output_codes=" ".join(transformation.output_codes),
            occurred_at=transformation.occurred_at))
        self.session.execute(orm.transformation_inputs.insert(), [
            {"transformation_id": transformation.transformation_id, "position": position,
             "batch_id": item.batch_id, "amount": item.quantity.amount,
             "unit": item.quantity.unit.value, "codes": " ".join(item.codes)}
            for position, item in enumerate(transformation.inputs)])

    def get_transformation(self, transformation_id: str) -> Transformation | None:
        t, i = orm.transformations.c, orm.transformation_inputs.c
        rows = self._rows(sa.select(orm.transformations)
                          .where(t.transformation_id == transformation_id))
        if not rows:
            return None
        inputs = self._rows(sa.select(orm.transformation_inputs)
                            .where(i.transformation_id == transformation_id)
                            .order_by(i.position))
        row = rows[0]
        return Transformation(
            transformation_id=row["transformation_id"], subject_id=row["subject_id"],
            kind=TransformationKind(row["kind"]),
            inputs=tuple(TransformationInput(r["batch_id"], _quantity(r["amount"], r["unit"]),
                                             _codes(r["codes"])) for r in inputs),
            output_batch_id=row["output_batch_id"], output_codes=_codes(row["output_codes"]),
            occurred_at=as_utc(row["occurred_at"]))

    def transformations_of(self, batch_id: str) -> list[Transformation]:
        """Transformations the batch went into or came out of."""
        t, i = orm.transformations.c, orm.transformation_inputs.c
        ids = set(self.session.scalars(
            sa.select(i.transformation_id).where(i.batch_id == batch_id)))
        ids |= set(self.session.scalars(
            sa.select(t.transformation_id).where(t.output_batch_id == batch_id)))
        found = [self.get_transformation(ident) for ident in sorted(ids)]
        return sorted((f for f in found if f is not None), key=lambda f: f.occurred_at)

    # -- internal trace ---------------------------------------------------------------------

    def add_traces(self, traces: Sequence[InternalTrace]) -> None:
        bulk_insert_values(self.session, orm.internal_traces, _TRACE_COLUMNS, [
            (t.source_province, t.source_record_id, t.batch_id, t.activity.value,
             t.occurred_at, _details_json(t.details), t.interval_days, t.passed)
            for t in traces])

    def find_traces(self, keys: Sequence[tuple[str, str]]
                    ) -> dict[tuple[str, str], InternalTrace]:
        c = orm.internal_traces.c
        found: dict[tuple[str, str], InternalTrace] = {}
        by_province: dict[str, list[str]] = {}
        for province, record_id in keys:
            by_province.setdefault(province, []).append(record_id)
        for province, record_ids in by_province.items():
            for condition in matching(self.session, c.source_record_id, record_ids):
                for row in self._rows(sa.select(orm.internal_traces).where(
                        c.source_province == province, condition)):
                    trace = _trace(row)
                    found[(trace.source_province, trace.source_record_id)] = trace
        return found

    def traces_of(self, batch_id: str) -> list[InternalTrace]:
        c = orm.internal_traces.c
        return [_trace(row) for row in self._rows(
            sa.select(orm.internal_traces).where(c.batch_id == batch_id)
            .order_by(c.occurred_at, c.source_record_id))]

    def batch_flags(self, batch_ids: Sequence[str]) -> dict[str, BatchFlags]:
        """Locks the rows (in id order, so two writers never wait for each other in a
        circle) until the transaction ends: the flags judged from them are written back before
        another writer reads them."""
        found: dict[str, BatchFlags] = {}
        columns = (_b.batch_id, _b.subject_id, _b.origin_division, _b.production_date,
                   _b.flags, _b.ended_at)
        for condition in matching(self.session, _b.batch_id, list(batch_ids)):
            query = sa.select(*columns).where(condition).order_by(_b.batch_id)
            for row in self.session.execute(query.with_for_update()).all():
                found[row.batch_id] = BatchFlags(
                    row.batch_id, row.subject_id, row.origin_division[:2], row.production_date,
                    _codes(row.flags), as_utc(row.ended_at) if row.ended_at else None)
        return found

    def applications(self, ends: dict[str, datetime]) -> dict[str, list[InternalTrace]]:
        """On PostgreSQL only the applications still inside their interval at the batch's end
        (occurred_at <= end < occurred_at + interval_days × 24 h, as InternalTrace.safe_from
        counts days): few rows. Elsewhere every application of the batches."""
        c = orm.internal_traces.c
        found: dict[str, list[InternalTrace]] = {batch_id: [] for batch_id in ends}
        if not ends:
            return found
        kinds = [a.value for a in Activity if a.has_interval]
        columns = (c.source_province, c.source_record_id, c.batch_id, c.activity,
                   c.occurred_at, c.interval_days)
        if self.session.get_bind().dialect.name == "postgresql":
            end = sa.func.unnest(sa.literal(list(ends), type_=ARRAY(sa.String())),
                                 sa.literal(list(ends.values()),
                                            type_=ARRAY(sa.DateTime(timezone=True)))
                                 ).table_valued("batch_id", "end_at").render_derived("e")
            query = sa.select(*columns).join(end, end.c.batch_id == c.batch_id).where(
                c.activity.in_(kinds), c.interval_days > 0, c.occurred_at <= end.c.end_at,
                c.occurred_at + sa.func.make_interval(0, 0, 0, 0, c.interval_days * 24)
                > end.c.end_at)
            queries = [query]
        else:
            queries = [sa.select(*columns).where(condition, c.activity.in_(kinds),
                                                 c.interval_days != 0)
                       for condition in matching(self.session, c.batch_id, list(ends))]
        for query in queries:
            for row in self.session.execute(query).all():
                found[row.batch_id].append(InternalTrace(
                    row.source_province, row.source_record_id, row.batch_id,
                    _ACTIVITIES[row.activity], as_utc(row.occurred_at), {}, row.interval_days))
        return found

    # -- imported EPCIS events --------------------------------------------------------------

    def add_imported(self, event_id: str, subject_id: str, event_time: datetime, kind: str,
                     event_json: str) -> bool:
        c = orm.imported_events.c
        if self.session.scalar(sa.select(c.event_id).where(c.subject_id == subject_id,
                                                            c.event_id == event_id)):
            return False
        self.session.execute(orm.imported_events.insert().values(
            event_id=event_id, subject_id=subject_id, event_time=event_time, kind=kind,
            event=event_json))
        return True

    def imported(self, subject_id: str, start: datetime | None,
                 end: datetime | None) -> list[str]:
        c = orm.imported_events.c
        query = sa.select(c.event).where(c.subject_id == subject_id)
        if start is not None:
            query = query.where(c.event_time >= start)
        if end is not None:
            query = query.where(c.event_time < end)
        return list(self.session.scalars(query.order_by(c.event_time, c.event_id)))

    # -- history ----------------------------------------------------------------------------

    def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        # COPY on PostgreSQL: `seq` (the order among entries of one instant) takes its
        # default in row order, as a multi-row INSERT would.
        bulk_insert_values(self.session, orm.history, _HISTORY_COLUMNS, [
            (e.batch_id, e.occurred_at, e.kind, e.subject_id, e.other_subject_id, e.record_id,
             e.summary[:500]) for e in entries])

    def history(self, batch_id: str, after: tuple[datetime, int] | None,
                limit: int) -> list[HistoryEntry]:
        h = orm.history.c
        query = sa.select(orm.history).where(h.batch_id == batch_id)
        if after is not None:
            query = query.where(sa.or_(h.occurred_at > after[0],
                                       sa.and_(h.occurred_at == after[0], h.seq > after[1])))
        rows = self._rows(query.order_by(h.occurred_at, h.seq).limit(limit))
        return [HistoryEntry(r["batch_id"], as_utc(r["occurred_at"]), r["kind"],
                             r["subject_id"], r["other_subject_id"], r["record_id"],
                             r["summary"], r["seq"]) for r in rows]


class FlowRequestLog(SqlAlchemyRequestLog):
    """The kernel's request log, plus the bulk reads and writes of a capture message."""

    def find_many(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        c = self.table.c
        found: dict[str, RequestRecord] = {}
        for condition in matching(self.session, c.request_id, list(request_ids)):
            for row in self.session.execute(sa.select(self.table).where(condition)).mappings():
                found[row["request_id"]] = RequestRecord(row["operation"], row["fingerprint"],
                                                         row["result_id"])
        return found

    def record_many(self, records: Sequence[tuple[str, RequestRecord]]) -> None:
        now = datetime.now(UTC)
        bulk_insert(self.session, self.table, [
            {"request_id": request_id, "operation": r.operation, "fingerprint": r.fingerprint,
             "result_id": r.result_id, "created_at": now} for request_id, r in records])


class FlowUnitOfWork(SqlAlchemyUnitOfWork):
    flow: SqlAlchemyFlowStore
    requests: FlowRequestLog

    def __init__(self, session_factory: sessionmaker[Session],
                 after_commit: Callable[[], None] | None = None) -> None:
        super().__init__(session_factory, after_commit)

    def _open(self, session: Session) -> None:
        self.flow = SqlAlchemyFlowStore(session)
        self.requests = FlowRequestLog(session, orm.request_log)
