"""bulk_insert (COPY on PostgreSQL, executemany on SQLite) and the outbox's multi-row append:
rows in order, and a duplicate key reported as the unit of work reports one."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from agritrace_kernel import db
from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.errors import AlreadyExists
from agritrace_kernel.events.model import Event
from agritrace_kernel.events.store import EventStore, create_event_tables, outbox

metadata = sa.MetaData()
rows_table = sa.Table("bulk_rows", metadata,
                      sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
                      sa.Column("key", sa.String(8), nullable=False, unique=True),
                      sa.Column("value", sa.Integer, nullable=False))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> sa.Engine:
    if request.param == "sqlite":
        target = DatabaseTarget(f"sqlite:///{tmp_path / 'bulk.db'}", None)
    else:
        target = request.getfixturevalue("postgres")
    engine = db.create_engine(target, pool_size=2)
    metadata.create_all(engine)
    with engine.begin() as connection:
        create_event_tables(connection)
    request.addfinalizer(engine.dispose)
    return engine


def test_bulk_insert_writes_the_rows_in_order(engine: sa.Engine) -> None:
    with db.SqlAlchemyUnitOfWork(db.session_factory(engine)) as uow:
        db.bulk_insert(uow.session, rows_table,
                       [{"key": f"k{n}", "value": n} for n in range(50)])
        db.bulk_insert(uow.session, rows_table, [])
        uow.commit()
    with engine.connect() as connection:
        stored = connection.execute(sa.select(rows_table.c.key, rows_table.c.value)
                                    .order_by(rows_table.c.seq)).all()
    assert stored == [(f"k{n}", n) for n in range(50)]


def test_a_duplicate_key_in_a_bulk_insert_is_a_concurrent_duplicate(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(rows_table.insert().values(key="taken", value=0))
    with pytest.raises(AlreadyExists) as error, \
            db.SqlAlchemyUnitOfWork(db.session_factory(engine)) as uow:
        db.bulk_insert(uow.session, rows_table, [{"key": "new", "value": 1},
                                                 {"key": "taken", "value": 2}])
        uow.commit()
    assert error.value.reason == "CONCURRENT_DUPLICATE"
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(rows_table)
                                  ).scalar_one() == 1


def test_the_outbox_takes_many_events_in_one_append_in_order(engine: sa.Engine) -> None:
    events = [Event("flow", "batch_created", {"n": n, "名": "番茄"}) for n in range(30)]
    with db.session_factory(engine)() as session:
        store = EventStore(session)
        store.append_outbox_many([])
        store.append_outbox_many(events)
        session.commit()
    with engine.connect() as connection:
        stored = connection.execute(sa.select(outbox.c.event_id, outbox.c.payload)
                                    .order_by(outbox.c.id)).all()
    assert [row.event_id for row in stored] == [event.event_id for event in events]
    assert stored[3].payload == '{"n": 3, "名": "番茄"}'


def test_bulk_insert_values_takes_rows_as_values_in_column_order(engine: sa.Engine) -> None:
    with db.SqlAlchemyUnitOfWork(db.session_factory(engine)) as uow:
        db.bulk_insert_values(uow.session, rows_table, ("value", "key"),
                              [(n, f"v{n}") for n in range(5)])
        db.bulk_insert_values(uow.session, rows_table, ("value", "key"), [])
        uow.commit()
    with engine.connect() as connection:
        stored = connection.execute(sa.select(rows_table.c.key, rows_table.c.value)
                                    .order_by(rows_table.c.seq)).all()
    assert stored == [(f"v{n}", n) for n in range(5)]


@pytest.mark.parametrize(("values", "line"), [
    ((1, "plain", "中文"), "1\tplain\t中文\n"),
    (("a\tb", "c"), "a\\tb\tc\n"),  # a tab inside a value, nothing else to escape
    (("back\\slash", "new\nline", "car\rriage"), "back\\\\slash\tnew\\nline\tcar\\rriage\n"),
    (("",), "\n"),
])
def test_copy_line_escapes_exactly_what_the_text_format_needs(
        values: tuple[object, ...], line: str) -> None:
    assert db.copy_line(values) == line
