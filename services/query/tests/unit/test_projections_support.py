"""Fixtures and event builders shared by the projection and rebuild tests (no tests here).

The projections' whole point is how their upserts behave in any order, so they run against
the real store on SQLite and, when one is reachable, on PostgreSQL (the two dialects' upserts
differ): each backend migrated once per module, emptied before each test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import agritrace_query
from agritrace_kernel import db
from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.events.model import Event
from agritrace_kernel.events.store import inbox
from agritrace_query.adapters import orm
from agritrace_query.adapters.unit_of_work import ProjectionUnitOfWork

MIGRATIONS = Path(agritrace_query.__file__).parent / "migrations"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 in China


def migrated(backend: str, tmp: Path) -> Iterator[Engine]:
    """A migrated query database of the backend; dropped afterwards."""
    if backend == "sqlite":
        target = DatabaseTarget(f"sqlite:///{tmp / 'query.db'}", None)
        db.migrate(target, MIGRATIONS)
        engine = db.create_engine(target, pool_size=2)
        yield engine
        engine.dispose()
        return
    schema = f"query_test_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(POSTGRES, connect_timeout=3):
            pass
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    target = DatabaseTarget(POSTGRES.replace("postgresql://", "postgresql+psycopg://"), schema)
    try:
        db.migrate(target, MIGRATIONS)
        engine = db.create_engine(target, pool_size=2)
        yield engine
        engine.dispose()
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    yield from migrated(request.param, tmp_path_factory.mktemp("query"))


def empty(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in (*orm.READ_MODEL_TABLES, orm.query_log, inbox):
            connection.execute(table.delete())


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    empty(engine)
    return db.session_factory(engine)


@pytest.fixture
def uow_factory(sessions: sessionmaker[Session]) -> Callable[[], ProjectionUnitOfWork]:
    return lambda: ProjectionUnitOfWork(sessions)


def _plain(value: Any) -> Any:
    """A stored value as comparable across backends (SQLite returns naive timestamps)."""
    return db.as_utc(value) if isinstance(value, datetime) else value


def rows(engine: Engine, table: sa.Table) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        found = connection.execute(sa.select(table)).mappings().all()
    return sorted(({key: _plain(value) for key, value in row.items()} for row in found),
                  key=lambda row: [str(value) for value in row.values()])


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every read-model table's rows."""
    return {table.name: rows(engine, table) for table in orm.READ_MODEL_TABLES}


def counts(engine: Engine) -> dict[tuple[date, str, str], int]:
    return {(row["day"], row["division_code"], row["metric"]): row["count"]
            for row in rows(engine, orm.daily_counts)}


# -- events as the source services write them --------------------------------------------------

def event(source: str, name: str, payload: dict[str, Any], at: datetime = T0,
          event_id: str | None = None) -> Event:
    return Event(source, name, payload, event_id=event_id or uuid.uuid4().hex, occurred_at=at)


def subject(subject_id: str, version: int = 1, division: str = "330106",
            name: str = "Green Tea Co-op", status: str = "ACTIVE") -> dict[str, Any]:
    return {"subject_id": subject_id, "kind": "COOPERATIVE", "name": name,
            "division_code": division, "credit_code": "", "status": status,
            "version": version}


def code(n: int, province: str = "33") -> str:
    return f"{province}{n:014d}"


def codes_issued(subject_id: str, codes: list[str], batch_id: str = "",
                 division: str = "330106", issuance_id: str = "7001",
                 at: datetime = T0) -> Event:
    return event("coding", "codes_issued", {
        "issuance_id": issuance_id, "subject_id": subject_id, "subject_division": division,
        "province": division[:2], "mode": "ONLINE", "product_batch_id": batch_id,
        "printer_subject_id": "", "line_id": "", "first_serial": 1,
        "last_serial": len(codes), "codes": codes, "code_count": len(codes), "part": 1,
        "parts": 1}, at)


def codes_moved(name: str, subject_ids: list[str], codes: list[str], at: datetime = T0,
                issuance_ids: tuple[str, ...] = ("7001",), **extra: Any) -> Event:
    return event("coding", name, {
        "subject_ids": subject_ids, "issuance_ids": list(issuance_ids),
        "provinces": sorted({c[:2] for c in codes}), "codes": codes,
        "code_count": len(codes), "part": 1, "parts": 1, **extra}, at)


def batch_payload(batch_id: str, subject_id: str, division: str = "330106",
                  **extra: Any) -> dict[str, Any]:
    return {"batch_id": batch_id, "subject_id": subject_id, "subject_division": division,
            "product_code": "TEA", "product_name": "Longjing tea", "category": "Tea",
            "quantity": "100.000", "unit": "KG", "production_date": "2024-04-28",
            "origin_division": division, "certificate_id": "", "parent_batch_ids": [],
            "code_count": 0, **extra}


def shipped(shipment_id: str, batch_id: str, seller: str, buyer: str,
            seller_province: str = "33", buyer_province: str = "33",
            at: datetime = T0) -> Event:
    return event("flow", "batch_shipped", {
        "shipment_id": shipment_id, "batch_id": batch_id, "seller_subject_id": seller,
        "buyer_subject_id": buyer, "seller_province": seller_province,
        "buyer_province": buyer_province, "cross_province": seller_province != buyer_province,
        "quantity": "40.000", "unit": "KG", "codes": [],
        "ship_time": at.isoformat()}, at)
