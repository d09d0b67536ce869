"""PointQuery, the hot-path SELECT: the same answers on SQLite and PostgreSQL, no transaction
left open, and a connection killed by the server replaced transparently."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from agritrace_kernel import db
from agritrace_kernel.config import DatabaseTarget
from agritrace_testing.postgres import ADMIN

metadata = sa.MetaData()
items = sa.Table("items", metadata, sa.Column("key", sa.String(8), primary_key=True),
                 sa.Column("value", sa.Integer, nullable=False))
LOOKUP = sa.select(items.c.key, items.c.value).where(items.c.key == sa.bindparam("key"))


def _filled(target: DatabaseTarget) -> sa.Engine:
    writer = db.create_engine(target)
    metadata.create_all(writer)
    with writer.begin() as connection:
        connection.execute(items.insert(), [{"key": "a", "value": 1}, {"key": "b", "value": 2}])
    writer.dispose()
    return db.create_engine(target, pool_size=2, pre_ping=False, autocommit=True)


def test_sqlite_answers_rows_without_holding_the_write_lock(tmp_path: Path) -> None:
    target = DatabaseTarget(f"sqlite:///{tmp_path / 'pq.db'}", None)
    engine = _filled(target)
    query = db.PointQuery(engine, LOOKUP)
    assert query.rows(key="a") == [("a", 1)]
    assert query.rows(key="zz") == []
    writer = db.create_engine(target)
    with writer.begin() as connection:  # BEGIN IMMEDIATE: would wait if a read held a lock
        connection.execute(items.update().values(value=3).where(items.c.key == "b"))
        assert query.rows(key="b") == [("b", 2)]  # WAL: the committed value
    assert query.rows(key="b") == [("b", 3)]
    writer.dispose()
    engine.dispose()


def test_postgres_replaces_a_connection_the_server_killed(postgres: DatabaseTarget) -> None:
    engine = _filled(postgres)
    query = db.PointQuery(engine, LOOKUP)
    assert query.rows(key="b") == [("b", 2)]
    name = postgres.url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        states = admin.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
        assert states == [("idle",)], "a pooled scan connection must not sit in a transaction"
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s", (name,))
    assert query.rows(key="a") == [("a", 1)]
    engine.dispose()


def test_postgres_runs_prepared_statements_on_a_kept_connection(
        postgres: DatabaseTarget) -> None:
    engine = _filled(postgres)
    query = db.PointQuery(engine, LOOKUP)
    by_value = db.PointQuery(engine, sa.select(items.c.key).where(
        items.c.value == sa.bindparam("value")))
    prepared = db.PointQuery(engine, sa.select(sa.column("statement")).select_from(
        sa.table("pg_prepared_statements")).where(sa.column("statement").like(
            sa.bindparam("pattern"))))
    assert query.rows(key="a") == [("a", 1)] and isinstance(query.rows(key="a")[0][1], int)
    assert by_value.rows(value=2) == [("b",)]  # an int parameter, sent as text
    assert query.rows(key="no such key") == []
    # One after the other, the queries ran on one kept connection: its session prepared all.
    statements = [row[0] for row in prepared.rows(pattern="%$1%")]
    assert len(statements) == 3
    name = postgres.url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        sessions = admin.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
    assert sessions == [("idle",)]
    engine.dispose()  # closes the kept connection (its backend ends moments later)
    deadline = time.monotonic() + 10
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        while (left := admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                     "%s", (name,)).fetchone()) != (0,) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    assert left == (0,)


def test_postgres_reports_a_failed_query_and_keeps_its_connection(
        postgres: DatabaseTarget) -> None:
    engine = _filled(postgres)
    by_value = db.PointQuery(engine, sa.select(items.c.key).where(
        items.c.value == sa.bindparam("value")))
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        by_value.rows(value="not a number")  # PostgreSQL's own error, as psycopg raises it
    assert by_value.rows(value=1) == [("a",)]
    name = postgres.url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        sessions = admin.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
    assert sessions == [("idle",)]  # the same connection served both, idle between queries
    engine.dispose()
