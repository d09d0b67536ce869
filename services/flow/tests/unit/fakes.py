"""Small hand-written fakes of the flow service's ports, as in "Architecture Patterns with
Python".

`FakeDatabase` is the "database": the committed tables plus the events published by committed
units of work. `FakeUnitOfWork` works on a private copy of the tables and replaces the
committed ones only on `commit()`, so a use case that fails half-way leaves nothing behind,
and only committed events count as published.

`FakeFlowStore` behaves like adapters/repository.py's SqlAlchemyFlowStore where it matters:
- unique keys (batch id, a code on one batch only, certificate id, shipment, entry and
  transformation ids, a transformation's output batch, (province, record id) of a trace,
  request id) surface as AlreadyExists(CONCURRENT_DUPLICATE), as the SQL unit of work
  reports an IntegrityError;
- lists come in the SQL order: batches by (created_at, batch_id), shipments by (ship_time,
  shipment_id), entries by (check_time, entry_id), traces by (occurred_at, source record id),
  imported events by (event_time, event_id), history by (occurred_at, seq), a batch's codes
  sorted; `transformations_of` returns those the batch went into or came out of;
- datetimes read back in UTC (the SQL store's as_utc), amounts with 3 decimals;
- history entries get an increasing `seq`; `add_imported` returns False for a known event id.

Rows are immutable and replaced on change, so copying a unit of work's tables copies the
containers only.

`FakeCodeService` is the coding service as the flow service sees it (the CodeService port):
codes -> (state, subject, batch); `bind` turns PRINTED codes ACTIVE for a batch, `derive`
consumes parents and hands out new codes, both idempotent by request id; every call is
recorded.

This module is loaded by conftest.py (tests run with --import-mode=importlib, so the test
directory is not on sys.path); tests get these objects through its fixtures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from agritrace_coding.domain.codes import (
    ALPHABET,
    CodeFormatError,
    check_character,
    normalize,
)
from agritrace_flow.domain.model import (
    Batch,
    InternalTrace,
    MarketEntry,
    Quantity,
    Shipment,
    Transformation,
)
from agritrace_flow.service_layer.ports import BatchFlags, CodeInfo, HistoryEntry
from agritrace_kernel.auth.principal import Principal, PrincipalKind, Role
from agritrace_kernel.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import RequestRecord
from agritrace_kernel.registry_client import SubjectInfo
from agritrace_testing.fakes import FakeUnitOfWorkBase

# -- the "database" ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedRow:
    """One row of imported_events."""

    subject_id: str
    event_time: datetime
    kind: str
    event_json: str


@dataclass
class Tables:
    """Everything the flow service stores."""

    batches: dict[str, Batch] = field(default_factory=dict)
    batch_codes: dict[str, str] = field(default_factory=dict)  # code -> batch id
    holdings: dict[tuple[str, str], Quantity] = field(default_factory=dict)  # (batch, subject)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    entries: dict[str, MarketEntry] = field(default_factory=dict)
    transformations: dict[str, Transformation] = field(default_factory=dict)
    traces: dict[tuple[str, str], InternalTrace] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    imported: dict[tuple[str, str], ImportedRow] = field(default_factory=dict)
    requests: dict[str, RequestRecord] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> Tables:
        # Every row is immutable (frozen dataclasses, tuples; a trace's details dict is
        # copied on the way in and never changed): copying the containers is enough.
        return Tables(
            batches=dict(self.batches), batch_codes=dict(self.batch_codes),
            holdings=dict(self.holdings), shipments=dict(self.shipments),
            entries=dict(self.entries), transformations=dict(self.transformations),
            traces=dict(self.traces), history=list(self.history),
            imported=dict(self.imported), requests=dict(self.requests),
        )


@dataclass
class FakeDatabase:
    committed: Tables = field(default_factory=Tables)
    published: list[Event] = field(default_factory=list)
    commits: int = 0
    # The next `fail_commits` commits raise Unavailable (the connection is lost): the unit
    # of work is discarded, as the database would roll it back.
    fail_commits: int = 0

    # Read helpers for assertions (committed state only).

    def snapshot(self) -> Tables:
        return self.committed.__deepcopy__({})

    def events_named(self, name: str) -> list[Event]:
        return [event for event in self.published if event.name == name]

    def event_names(self) -> list[str]:
        return [event.name for event in self.published]

    def batch(self, batch_id: str) -> Batch:
        return self.committed.batches[batch_id]

    def holding(self, batch_id: str, subject_id: str) -> Quantity | None:
        return self.committed.holdings.get((batch_id, subject_id))

    def codes_of(self, batch_id: str) -> list[str]:
        return sorted(code for code, owner in self.committed.batch_codes.items()
                      if owner == batch_id)

    def history_kinds(self, batch_id: str) -> list[str]:
        return [entry.kind for entry in FakeFlowStore(self.committed).history(
            batch_id, None, 1_000_000)]


def _duplicate(what: str) -> AlreadyExists:
    # What SqlAlchemyUnitOfWork raises for an IntegrityError.
    return AlreadyExists(f"duplicate {what}", reason="CONCURRENT_DUPLICATE")


def _utc(moment: datetime) -> datetime:
    """A timestamp as the SQL store reads it back (agritrace_kernel.db.as_utc)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _quantity(quantity: Quantity) -> Quantity:
    """An amount as a Numeric(18, 3) column holds it."""
    return Quantity(quantity.amount.quantize(Decimal("0.001")), quantity.unit)


class FakeFlowStore:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    # -- batches ----------------------------------------------------------------------------

    def add_batch(self, batch: Batch, codes: Sequence[str]) -> None:
        tables = self._tables
        if batch.batch_id in tables.batches:
            raise _duplicate(f"batch_id {batch.batch_id}")
        certificate = batch.certificate
        if certificate is not None and any(
                other.certificate is not None
                and other.certificate.certificate_id == certificate.certificate_id
                for other in tables.batches.values()):
            raise _duplicate(f"certificate_id {certificate.certificate_id}")
        if len(set(codes)) != len(codes) or any(code in tables.batch_codes for code in codes):
            raise _duplicate("batch_codes code")
        tables.batches[batch.batch_id] = replace(
            batch, quantity=_quantity(batch.quantity),
            created_at=_utc(batch.created_at) if batch.created_at else None)
        for code in codes:
            tables.batch_codes[code] = batch.batch_id

    def add_batches(self, batches: Sequence[tuple[Batch, Sequence[str]]]) -> None:
        for batch, codes in batches:
            self.add_batch(batch, codes)

    def get_batch(self, batch_id: str) -> Batch | None:
        return self._tables.batches.get(batch_id)

    def get_batches(self, batch_ids: Sequence[str]) -> dict[str, Batch]:
        return {ident: self._tables.batches[ident] for ident in batch_ids
                if ident in self._tables.batches}

    def batch_by_certificate(self, certificate_id: str) -> Batch | None:
        for batch in self._tables.batches.values():
            if batch.certificate is not None and \
                    batch.certificate.certificate_id == certificate_id:
                return batch
        return None

    def batches_by_certificate(self, certificate_ids: Sequence[str]) -> dict[str, Batch]:
        found = {ident: self.batch_by_certificate(ident) for ident in certificate_ids}
        return {ident: batch for ident, batch in found.items() if batch is not None}

    def batch_codes(self, batch_id: str) -> list[str]:
        return sorted(code for code, owner in self._tables.batch_codes.items()
                      if owner == batch_id)

    def set_flag_states(self, states: Sequence[tuple[str, Sequence[str], datetime | None]]
                        ) -> None:
        for batch_id, flags, ended_at in states:
            batch = self._tables.batches.get(batch_id)
            if batch is not None:
                # Stored space-separated and split on the way back.
                self._tables.batches[batch_id] = replace(
                    batch, flags=tuple(" ".join(flags).split()),
                    ended_at=_utc(ended_at) if ended_at else None)

    def batches_between(self, *, subject_id: str = "", product_code: str = "",
                        start: datetime | None = None,
                        end: datetime | None = None) -> list[Batch]:
        found = [
            batch for batch in self._tables.batches.values()
            if (not subject_id or batch.subject_id == subject_id)
            and (not product_code or batch.product_code == product_code)
            and (start is None or (batch.created_at is not None and batch.created_at >= start))
            and (end is None or (batch.created_at is not None and batch.created_at < end))
        ]
        return sorted(found, key=lambda b: (b.created_at or datetime.min.replace(tzinfo=UTC),
                                            b.batch_id))

    # -- holdings ---------------------------------------------------------------------------

    def holding(self, batch_id: str, subject_id: str) -> Quantity | None:
        return self._tables.holdings.get((batch_id, subject_id))

    def holdings(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Quantity]:
        return {key: self._tables.holdings[key] for key in keys if key in self._tables.holdings}

    def set_holding(self, batch_id: str, subject_id: str, quantity: Quantity) -> None:
        self._tables.holdings[(batch_id, subject_id)] = _quantity(quantity)

    def put_holdings(self, new: Sequence[tuple[str, str, Quantity]],
                     changed: Sequence[tuple[str, str, Quantity]]) -> None:
        for batch_id, subject_id, quantity in new:
            if (batch_id, subject_id) in self._tables.holdings:
                raise _duplicate(f"holdings ({batch_id}, {subject_id})")
            self.set_holding(batch_id, subject_id, quantity)
        for batch_id, subject_id, quantity in changed:
            if (batch_id, subject_id) in self._tables.holdings:  # an UPDATE of no row
                self.set_holding(batch_id, subject_id, quantity)

    # -- shipments and entries --------------------------------------------------------------

    def add_shipment(self, shipment: Shipment) -> None:
        if shipment.shipment_id in self._tables.shipments:
            raise _duplicate(f"shipment_id {shipment.shipment_id}")
        self._tables.shipments[shipment.shipment_id] = replace(
            shipment, quantity=_quantity(shipment.quantity), ship_time=_utc(shipment.ship_time),
            received_at=_utc(shipment.received_at) if shipment.received_at else None)

    def add_shipments(self, shipments: Sequence[Shipment]) -> None:
        for shipment in shipments:
            self.add_shipment(shipment)

    def get_shipment(self, shipment_id: str) -> Shipment | None:
        return self._tables.shipments.get(shipment_id)

    def get_shipments(self, shipment_ids: Sequence[str]) -> dict[str, Shipment]:
        return {ident: self._tables.shipments[ident] for ident in shipment_ids
                if ident in self._tables.shipments}

    def shipments_of(self, batch_id: str) -> list[Shipment]:
        return sorted((s for s in self._tables.shipments.values() if s.batch_id == batch_id),
                      key=lambda s: (s.ship_time, s.shipment_id))

    def mark_received(self, shipment_id: str, at: datetime) -> None:
        shipment = self._tables.shipments.get(shipment_id)
        if shipment is not None:
            self._tables.shipments[shipment_id] = replace(shipment, received_at=_utc(at))

    def add_entry(self, entry: MarketEntry) -> None:
        if entry.entry_id in self._tables.entries:
            raise _duplicate(f"entry_id {entry.entry_id}")
        self._tables.entries[entry.entry_id] = replace(entry, check_time=_utc(entry.check_time))

    def get_entry(self, entry_id: str) -> MarketEntry | None:
        return self._tables.entries.get(entry_id)

    def entries_of(self, batch_id: str) -> list[MarketEntry]:
        return sorted((e for e in self._tables.entries.values() if e.batch_id == batch_id),
                      key=lambda e: (e.check_time, e.entry_id))

    # -- transformations --------------------------------------------------------------------

    def add_transformation(self, transformation: Transformation) -> None:
        tables = self._tables
        if transformation.transformation_id in tables.transformations:
            raise _duplicate(f"transformation_id {transformation.transformation_id}")
        if any(t.output_batch_id == transformation.output_batch_id
               for t in tables.transformations.values()):
            raise _duplicate(f"output_batch_id {transformation.output_batch_id}")
        tables.transformations[transformation.transformation_id] = replace(
            transformation, occurred_at=_utc(transformation.occurred_at),
            inputs=tuple(replace(i, quantity=_quantity(i.quantity))
                         for i in transformation.inputs))

    def get_transformation(self, transformation_id: str) -> Transformation | None:
        return self._tables.transformations.get(transformation_id)

    def transformations_of(self, batch_id: str) -> list[Transformation]:
        """Transformations the batch went into or came out of."""
        found = [t for ident, t in sorted(self._tables.transformations.items())
                 if t.output_batch_id == batch_id
                 or any(i.batch_id == batch_id for i in t.inputs)]
        return sorted(found, key=lambda t: t.occurred_at)

    # -- internal trace ---------------------------------------------------------------------

    def add_trace(self, trace: InternalTrace) -> None:
        key = (trace.source_province, trace.source_record_id)
        if key in self._tables.traces:
            raise _duplicate(f"internal_traces {key}")
        self._tables.traces[key] = replace(trace, occurred_at=_utc(trace.occurred_at),
                                           details=dict(trace.details))

    def add_traces(self, traces: Sequence[InternalTrace]) -> None:
        for trace in traces:
            self.add_trace(trace)

    def get_trace(self, source_province: str, source_record_id: str) -> InternalTrace | None:
        return self._tables.traces.get((source_province, source_record_id))

    def find_traces(self, keys: Sequence[tuple[str, str]]
                    ) -> dict[tuple[str, str], InternalTrace]:
        return {key: self._tables.traces[key] for key in keys if key in self._tables.traces}

    def traces_of(self, batch_id: str) -> list[InternalTrace]:
        return sorted((t for t in self._tables.traces.values() if t.batch_id == batch_id),
                      key=lambda t: (t.occurred_at, t.source_record_id))

    def batch_flags(self, batch_ids: Sequence[str]) -> dict[str, BatchFlags]:
        return {batch_id: BatchFlags(batch.batch_id, batch.subject_id, batch.province,
                                     batch.production_date, batch.flags, batch.ended_at)
                for batch_id in batch_ids
                if (batch := self._tables.batches.get(batch_id)) is not None}

    def applications(self, ends: dict[str, datetime]) -> dict[str, list[InternalTrace]]:
        # Every application of the batches (the SQL store on PostgreSQL hands back only those
        # still inside their interval at the end: the others raise no flag).
        return {batch_id: [t for t in self.traces_of(batch_id)
                           if t.activity.has_interval and t.interval_days]
                for batch_id in ends}

    # -- imported EPCIS events --------------------------------------------------------------

    def add_imported(self, event_id: str, subject_id: str, event_time: datetime, kind: str,
                     event_json: str) -> bool:
        if (subject_id, event_id) in self._tables.imported:
            return False
        self._tables.imported[(subject_id, event_id)] = ImportedRow(
            subject_id, _utc(event_time), kind, event_json)
        return True

    def imported(self, subject_id: str, start: datetime | None,
                 end: datetime | None) -> list[str]:
        rows = sorted(
            (row.event_time, event_id, row.event_json)
            for (_, event_id), row in self._tables.imported.items()
            if row.subject_id == subject_id
            and (start is None or row.event_time >= start)
            and (end is None or row.event_time < end))
        return [event_json for *_, event_json in rows]

    # -- history ----------------------------------------------------------------------------

    def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        history = self._tables.history
        for entry in entries:
            seq = (history[-1].seq if history else 0) + 1
            history.append(replace(entry, occurred_at=_utc(entry.occurred_at),
                                   summary=entry.summary[:500], seq=seq))

    def history(self, batch_id: str, after: tuple[datetime, int] | None,
                limit: int) -> list[HistoryEntry]:
        found = sorted((e for e in self._tables.history if e.batch_id == batch_id
                        and (after is None or (e.occurred_at, e.seq) > after)),
                       key=lambda e: (e.occurred_at, e.seq))
        return found[:limit]


class FakeRequestLog:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def find(self, request_id: str) -> RequestRecord | None:
        return self._tables.requests.get(request_id)

    def record(self, request_id: str, record: RequestRecord) -> None:
        if request_id in self._tables.requests:
            raise _duplicate(f"request_id {request_id}")
        self._tables.requests[request_id] = record

    def find_many(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        return {ident: self._tables.requests[ident] for ident in request_ids
                if ident in self._tables.requests}

    def record_many(self, records: Sequence[tuple[str, RequestRecord]]) -> None:
        for request_id, record in records:
            self.record(request_id, record)


class FakeUnitOfWork(FakeUnitOfWorkBase[Tables]):
    """The service's stores over agritrace_testing's copy-on-begin unit of work. A read-only
    one (what `reader_factory` hands out) refuses to commit: reads never write."""

    flow: FakeFlowStore
    requests: FakeRequestLog

    def __init__(self, database: FakeDatabase, *, read_only: bool = False) -> None:
        self.read_only = read_only
        super().__init__(database)

    def _open(self, working: Tables) -> None:
        self.flow = FakeFlowStore(working)
        self.requests = FakeRequestLog(working)

    def commit(self) -> None:
        assert not self.read_only, "a read-only unit of work was committed"
        database: FakeDatabase = self.database  # type: ignore[assignment]
        if database.fail_commits:
            database.fail_commits -= 1
            self.rollback()
            raise Unavailable("the database connection was lost during commit")
        super().commit()


# -- collaborators -----------------------------------------------------------------------------


class FakeSubjectDirectory:
    """SubjectDirectory over a dict; `unavailable` makes it fail as an unreachable registry."""

    def __init__(self, subjects: Sequence[SubjectInfo] = ()) -> None:
        self.subjects = {subject.subject_id: subject for subject in subjects}
        self.unavailable = False
        self.asked: list[str] = []

    def add(self, subject_id: str, division_code: str, status: str = "APPROVED") -> SubjectInfo:
        info = SubjectInfo(subject_id, division_code, status)
        self.subjects[subject_id] = info
        return info

    def get(self, subject_id: str) -> SubjectInfo | None:
        self.asked.append(subject_id)
        if self.unavailable:
            raise Unavailable(f"the registry could not be asked about subject {subject_id}")
        return self.subjects.get(subject_id)


@dataclass(frozen=True)
class CodeRow:
    """What the coding service knows of one code."""

    state: str  # ISSUED, PRINTED, ACTIVE, CONSUMED, VOID
    subject_id: str
    batch_id: str = ""


def make_code(province: str, serial: int, salt: str = "") -> str:
    """A well-formed code (valid check character): the province, 13 characters derived from
    `serial` and `salt`, the check character. Deterministic, not in serial order."""
    digest = hashlib.sha256(f"{salt}:{serial}".encode()).digest()
    body = province + "".join(ALPHABET[byte % len(ALPHABET)] for byte in digest[:13])
    return body + check_character(body)


class FakeCodeService:
    """The CodeService port over a dict of codes. `unavailable` makes every call fail as an
    unreachable coding service. `calls` records bind and derive calls, `lookups` the codes
    asked about."""

    def __init__(self, subjects: FakeSubjectDirectory) -> None:
        self.subjects = subjects
        self.codes: dict[str, CodeRow] = {}
        self.unavailable = False
        self.calls: list[tuple[Any, ...]] = []
        self.lookups: list[str] = []
        self._bound: dict[str, tuple[tuple[str, ...], str, int]] = {}
        self._derived: dict[str, tuple[tuple[Any, ...], list[str]]] = {}
        self._serial = 0

    # -- set-up helpers ---------------------------------------------------------------------

    def issue(self, subject_id: str, count: int, state: str = "PRINTED",
              batch_id: str = "") -> list[str]:
        """`count` new codes of the subject's province in `state`."""
        province = self.subjects.subjects[subject_id].province
        codes = []
        for _ in range(count):
            self._serial += 1
            code = make_code(province, self._serial, "issued")
            self.codes[code] = CodeRow(state, subject_id, batch_id)
            codes.append(code)
        return codes

    def state_of(self, code: str) -> str:
        return self.codes[code].state

    def batch_of(self, code: str) -> str:
        return self.codes[code].batch_id

    def calls_named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]

    # -- the port ---------------------------------------------------------------------------

    def _check_available(self) -> None:
        if self.unavailable:
            raise Unavailable("the coding service could not be reached")

    def lookup(self, code: str) -> CodeInfo:
        self._check_available()
        self.lookups.append(code)
        try:
            canonical = normalize(code)
        except CodeFormatError as error:
            raise InvalidArgument.of("code", str(error)) from None
        row = self.codes.get(canonical)
        if row is None:
            return CodeInfo(canonical, False, "", "", "")
        return CodeInfo(canonical, True, row.state, row.subject_id, row.batch_id)

    def bind(self, request_id: str, codes: Sequence[str], batch_id: str) -> int:
        self._check_available()
        self.calls.append(("bind", request_id, tuple(codes), batch_id))
        earlier = self._bound.get(request_id)
        if earlier is not None:
            if earlier[:2] != (tuple(codes), batch_id):
                raise FailedPrecondition("request_id was already used for a different request",
                                         reason="REQUEST_ID_REUSED")
            return earlier[2]
        moved = 0
        for code in codes:
            row = self.codes[code]
            if row.state == "PRINTED":
                self.codes[code] = replace(row, state="ACTIVE", batch_id=batch_id)
                moved += 1
        self._bound[request_id] = (tuple(codes), batch_id, moved)
        return moved

    def derive(self, request_id: str, subject_id: str, parents: Sequence[str], batch_id: str,
               quantity: int, reason: str) -> list[str]:
        self._check_available()
        arguments = (subject_id, tuple(parents), batch_id, quantity, reason)
        self.calls.append(("derive", request_id, *arguments))
        earlier = self._derived.get(request_id)
        if earlier is not None:
            if earlier[0] != arguments:
                raise FailedPrecondition("request_id was already used for a different request",
                                         reason="REQUEST_ID_REUSED")
            return list(earlier[1])
        for code in parents:
            row = self.codes.get(code)
            if row is None or row.state != "ACTIVE":
                raise FailedPrecondition(f"parent code {code} is not active",
                                         reason="PARENT_NOT_ACTIVE")
        for code in parents:
            self.codes[code] = replace(self.codes[code], state="CONSUMED")
        province = self.subjects.subjects[subject_id].province
        children = []
        for _ in range(quantity):
            self._serial += 1
            code = make_code(province, self._serial, "derived")
            self.codes[code] = CodeRow("ACTIVE", subject_id, batch_id)
            children.append(code)
        self._derived[request_id] = (arguments, list(children))
        return children


class SequentialIds:
    """Record ids as new_id makes them (a kind letter, the province, 13 characters), from a
    counter; `forced` answers come first."""

    def __init__(self) -> None:
        self.count = 0
        self.forced: list[str] = []
        self.issued: list[str] = []

    def __call__(self, prefix: str, province: str) -> str:
        if self.forced:
            ident = self.forced.pop(0)
        else:
            self.count += 1
            ident = f"{prefix}{province}{self.count:013d}"
        self.issued.append(ident)
        return ident


# -- subjects and callers ------------------------------------------------------------------------

COOP = "S37COOP0783001"  # a vegetable cooperative in Shouguang, Shandong
NEIGHBOUR = "S37COOP0783002"  # another cooperative in the same county
MARKET = "S11MKT0106001"  # a wholesale market in Fengtai, Beijing
RETAILER = "S11RTL0105001"  # a supermarket in Chaoyang, Beijing
PACKER = "S44PCK0305001"  # a packer in Nanshan, Shenzhen
SUSPENDED = "S37SUSPENDED01"
DIVISIONS = {COOP: "370783", NEIGHBOUR: "370783", MARKET: "110106", RETAILER: "110105",
             PACKER: "440305", SUSPENDED: "370783"}


def standard_subjects() -> list[SubjectInfo]:
    return [SubjectInfo(subject_id, division,
                        "SUSPENDED" if subject_id == SUSPENDED else "APPROVED")
            for subject_id, division in DIVISIONS.items()]


PROCESS = "process"  # actor=None: the process itself
OPERATOR_COOP = "operator_of_coop"
OPERATOR_MARKET = "operator_of_market"
OPERATOR_RETAILER = "operator_of_retailer"
PLATFORM_37 = "platform_37"
PLATFORM_11 = "platform_11"
REGULATOR_COUNTY = "regulator_county_370783"
REGULATOR_PROVINCE = "regulator_province_37"
REGULATOR_OTHER_PROVINCE = "regulator_province_44"
REGULATOR_NATIONAL = "regulator_national"
OPS_ADMIN = "ops_admin"
SERVICE_ACCOUNT = "service_account"


def _principal(name: str, kind: PrincipalKind, jurisdiction: str = "", subject_id: str = "",
               roles: frozenset[str] = frozenset()) -> Principal:
    return Principal(
        account_id=f"acc-{name}", kind=kind, username=name, subject_id=subject_id,
        jurisdiction=jurisdiction, roles=roles, session_id=f"session-{name}",
        audience="agritrace",
    )


_INSPECTOR = frozenset({Role.INSPECTOR})

PRINCIPALS: dict[str, Principal | None] = {
    PROCESS: None,
    OPERATOR_COOP: _principal(OPERATOR_COOP, PrincipalKind.SUBJECT_OPERATOR, subject_id=COOP),
    OPERATOR_MARKET: _principal(OPERATOR_MARKET, PrincipalKind.SUBJECT_OPERATOR,
                                subject_id=MARKET),
    OPERATOR_RETAILER: _principal(OPERATOR_RETAILER, PrincipalKind.SUBJECT_OPERATOR,
                                  subject_id=RETAILER),
    PLATFORM_37: _principal(PLATFORM_37, PrincipalKind.PLATFORM_CLIENT, "37"),
    PLATFORM_11: _principal(PLATFORM_11, PrincipalKind.PLATFORM_CLIENT, "11"),
    REGULATOR_COUNTY: _principal(REGULATOR_COUNTY, PrincipalKind.REGULATOR, "370783",
                                 roles=_INSPECTOR),
    REGULATOR_PROVINCE: _principal(REGULATOR_PROVINCE, PrincipalKind.REGULATOR, "37",
                                   roles=_INSPECTOR),
    REGULATOR_OTHER_PROVINCE: _principal(REGULATOR_OTHER_PROVINCE, PrincipalKind.REGULATOR,
                                         "44", roles=_INSPECTOR),
    REGULATOR_NATIONAL: _principal(REGULATOR_NATIONAL, PrincipalKind.REGULATOR, "",
                                   roles=_INSPECTOR),
    OPS_ADMIN: _principal(OPS_ADMIN, PrincipalKind.OPS_ADMIN),
    SERVICE_ACCOUNT: _principal(SERVICE_ACCOUNT, PrincipalKind.SERVICE),
}

# The day before the fixed clock's (2024-05-01 08:00 UTC).
PRODUCTION_DATE = date(2024, 4, 30)
