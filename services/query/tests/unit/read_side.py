"""Test support of the query service's read side: a real read model on a throwaway SQLite
file (the adapters' SQL is part of what is tested), a few rows at a time, the cross-province
chain the permission matrix runs on, and the callers of every kind. Loaded by the test
modules with agritrace_testing.fakes.load_beside (test folders are not packages)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from agritrace_coding.domain.codes import new_codes
from agritrace_kernel import db
from agritrace_kernel.auth.principal import Principal, PrincipalKind
from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.events.store import create_event_tables
from agritrace_query.adapters import orm
from agritrace_query.adapters.cache import InMemoryOriginCache
from agritrace_query.adapters.query_log_writer import QueryLogWriter
from agritrace_query.adapters.query_unit_of_work import QueryUnitOfWork
from agritrace_query.adapters.read_store import PointOriginReader
from agritrace_query.domain.query_log import QueryRecord
from agritrace_query.domain.visibility import Asker
from agritrace_query.service_layer.services import Caller, QueryService
from agritrace_testing.fakes import FixedClock

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class ReadModel:
    """A migrated-by-metadata query database and the sessions the adapters use."""

    engine: sa.Engine
    scan_engine: sa.Engine
    sessions: Any
    readers: Any
    drop: Callable[[], None] | None = None

    @classmethod
    def create(cls, directory: Path) -> ReadModel:
        return cls.on(DatabaseTarget(url=f"sqlite:///{directory / 'query.db'}", schema=None))

    @classmethod
    def on(cls, target: DatabaseTarget) -> ReadModel:
        engine = db.create_engine(target, pool_size=2)
        with engine.begin() as connection:
            orm.metadata.create_all(connection)
            create_event_tables(connection)
        scan_engine = db.create_engine(target, pool_size=2, pre_ping=False, autocommit=True)
        return cls(engine, scan_engine, db.session_factory(engine),
                   db.reader_session_factory(engine))

    @classmethod
    def postgres(cls) -> ReadModel:
        """In a throwaway schema of PostgreSQL's `test` database (dropped by close; a schema
        is much quicker to make than a database); skips the test when there is no
        PostgreSQL at 127.0.0.1:5432."""
        schema = f"query_unit_{uuid.uuid4().hex[:10]}"
        try:
            with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3) as admin:
                admin.execute(f'CREATE SCHEMA "{schema}"')
        except psycopg.OperationalError:
            pytest.skip("no PostgreSQL at 127.0.0.1:5432")

        def drop() -> None:
            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        model = cls.on(DatabaseTarget("postgresql+psycopg://postgres@127.0.0.1:5432/test",
                                      schema))
        model.drop = drop
        return model

    def insert(self, table: sa.Table, *rows: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(table.insert(), list(rows))

    def close(self) -> None:
        self.scan_engine.dispose()
        self.engine.dispose()
        if self.drop is not None:
            self.drop()

    # -- rows with sensible defaults --------------------------------------------------------

    def subject(self, subject_id: str, division: str, name: str = "", kind: str = "ENTERPRISE",
                registered_at: datetime = T0) -> None:
        self.insert(orm.subjects, {
            "subject_id": subject_id, "kind": kind, "name": name or f"Subject {subject_id}",
            "division_code": division, "province": division[:2], "status": "ACTIVE",
            "version": 1, "registered_at": registered_at})

    def batch(self, batch_id: str, subject_id: str, division: str, *,
              certificate: dict[str, Any] | None = None, flags: str = "",
              passed: int = 0, failed: int = 0, product_name: str = "Tea") -> None:
        self.insert(orm.batches, {
            "batch_id": batch_id, "subject_id": subject_id, "subject_division": division,
            "product_code": "P001", "product_name": product_name, "category": "Tea leaves",
            "quantity": "100", "unit": "KG", "production_date": date(2024, 4, 28),
            "origin_division": division,
            "certificate": json.dumps(certificate) if certificate else "",
            "flags": flags, "inspections_passed": passed, "inspections_failed": failed,
            "created_at": T0})

    def codes(self, batch_id: str, count: int = 1, state: str = "ACTIVE",
              province: str = "33") -> list[str]:
        made = new_codes(province, count)
        self.insert(orm.codes, *({"code": code, "issuance_id": "I1", "province": province,
                                  "subject_id": "", "state": state, "batch_id": batch_id,
                                  "updated_at": T0} for code in made))
        return made

    def shipment(self, shipment_id: str, batch_id: str, seller: str, buyer: str,
                 hours: int = 1) -> None:
        self.insert(orm.shipments, {
            "shipment_id": shipment_id, "batch_id": batch_id, "seller_subject_id": seller,
            "buyer_subject_id": buyer, "seller_province": "", "buyer_province": "",
            "quantity": "10", "unit": "KG", "code_count": 0,
            "ship_time": T0 + timedelta(hours=hours)})

    def transformation(self, transformation_id: str, inputs: list[str], output: str,
                       subject_id: str) -> None:
        self.insert(orm.transformation_inputs, *({
            "transformation_id": transformation_id, "input_batch_id": batch_id,
            "output_batch_id": output, "subject_id": subject_id, "kind": "REPACK",
            "quantity": "10", "unit": "KG", "occurred_at": T0 + timedelta(hours=5)}
            for batch_id in inputs))


@pytest.fixture(params=["sqlite", "postgresql"])
def model(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModel]:
    """A fresh read model on each database the service runs on (a test module takes it with
    `model = side.model`)."""
    found = ReadModel.create(tmp_path) if request.param == "sqlite" else ReadModel.postgres()
    yield found
    found.close()


class ListSink:
    """The query log as a list, passed on to the real writer when there is one (which the
    test flushes when it reads the log back)."""

    def __init__(self, writer: QueryLogWriter | None = None) -> None:
        self.records: list[QueryRecord] = []
        self.writer = writer

    def append(self, record: QueryRecord) -> None:
        self.records.append(record)
        if self.writer is not None:
            self.writer.append(record)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    @property
    def last(self) -> QueryRecord:
        return self.records[-1]


@dataclass
class Wiring:
    model: ReadModel
    service: QueryService
    sink: ListSink
    cache: InMemoryOriginCache
    clock: FixedClock
    writer: QueryLogWriter | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def wire(model: ReadModel, *, real_log: bool = False, threshold: int = 5) -> Wiring:
    """The service over `model`; its log a ListSink, passed on to the real writer when
    `real_log`."""
    cache = InMemoryOriginCache()
    clock = FixedClock(T0 + timedelta(days=1))
    writer = QueryLogWriter(lambda: QueryUnitOfWork(model.sessions)) if real_log else None
    sink = ListSink(writer)
    service = QueryService(
        origins=PointOriginReader(model.scan_engine), cache=cache, log_sink=sink,
        reader_factory=lambda: QueryUnitOfWork(model.readers),
        uow_factory=lambda: QueryUnitOfWork(model.sessions), clock=clock,
        counterfeit_threshold=threshold)
    return Wiring(model, service, sink, cache, clock, writer)


# -- callers ------------------------------------------------------------------------------------


def principal(kind: PrincipalKind, *, subject_id: str = "", jurisdiction: str = "",
              roles: tuple[str, ...] = (), account: str = "") -> Principal:
    return Principal(
        account_id=account or f"acct-{kind.value.lower()}-{subject_id or jurisdiction or 'x'}",
        kind=kind, username="u", subject_id=subject_id, jurisdiction=jurisdiction,
        roles=frozenset(roles), session_id="s", audience="agritrace")


def caller(who: Principal | None, place: str = "") -> Caller:
    return Caller(Asker.of(who, "f00dfeedf00dfeed"), place)


CONSUMER = None


def operator(subject_id: str) -> Principal:
    return principal(PrincipalKind.SUBJECT_OPERATOR, subject_id=subject_id)


def regulator(jurisdiction: str, *roles: str) -> Principal:
    return principal(PrincipalKind.REGULATOR, jurisdiction=jurisdiction, roles=roles)


ADMIN = principal(PrincipalKind.OPS_ADMIN)
SERVICE = principal(PrincipalKind.SERVICE)
PLATFORM_33 = principal(PrincipalKind.PLATFORM_CLIENT, jurisdiction="33")


# -- the cross-province chain -------------------------------------------------------------------
#
#   FARM (330106, 杭州 西湖区) creates B1 ─S1→ WHOLESALER (330102, 杭州 上城区) ─S2→
#   PROCESSOR (310101, 上海 黄浦区), which repacks B1 into B2 (T1) ─S3→ RETAILER (310104,
#   上海 徐汇区). OUTSIDER (440106, 广州 天河区) never handled any of it.

FARM, WHOLESALER, PROCESSOR, RETAILER, OUTSIDER = "SFARM", "SWHOLE", "SPROC", "SRETAIL", "SOUT"
DIVISIONS = {FARM: "330106", WHOLESALER: "330102", PROCESSOR: "310101", RETAILER: "310104",
             OUTSIDER: "440106"}


@dataclass(frozen=True)
class Chain:
    b1_code: str
    b2_code: str


def seed_chain(model: ReadModel) -> Chain:
    for subject_id, division in DIVISIONS.items():
        model.subject(subject_id, division)
    model.batch("B1", FARM, DIVISIONS[FARM], certificate={
        "certificate_id": "C1", "producer_name": "Farm", "contact_phone_masked": "138****5678",
        "issue_date": "2024-04-28", "commitment": "no banned drugs", "basis": "SELF_TEST",
        "test_result": "pass"})
    model.batch("B2", PROCESSOR, DIVISIONS[PROCESSOR], product_name="Tea gift box")
    model.shipment("S1", "B1", FARM, WHOLESALER, hours=1)
    model.shipment("S2", "B1", WHOLESALER, PROCESSOR, hours=2)
    model.transformation("T1", ["B1"], "B2", PROCESSOR)
    model.shipment("S3", "B2", PROCESSOR, RETAILER, hours=6)
    (b1_code,) = model.codes("B1")
    (b2_code,) = model.codes("B2", province="31")
    return Chain(b1_code, b2_code)
