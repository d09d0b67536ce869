"""KeyedSelect, a trace's many-keys read: the same rows on SQLite and PostgreSQL, inside the
session's transaction, with the statement's own parameters kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from agritrace_kernel import db
from agritrace_kernel.config import DatabaseTarget

metadata = sa.MetaData()
links = sa.Table("links", metadata, sa.Column("link_id", sa.String(16), primary_key=True),
                 sa.Column("batch_id", sa.String(16), nullable=False),
                 sa.Column("holder", sa.String(16), nullable=False))
# A bound value of the statement's own besides the keys (as the lineage reads have).
OF_BATCHES = db.KeyedSelect(sa.select(links.c.link_id, links.c.batch_id)
                            .where(links.c.holder != "nobody"), links.c.batch_id)
# More batches than one SQLite IN list takes.
BATCHES = [f"B{number:05d}" for number in range(db.IN_CHUNK + 300)]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseTarget:
    if request.param == "sqlite":
        return DatabaseTarget(f"sqlite:///{tmp_path / 'keyed.db'}", None)
    found: DatabaseTarget = request.getfixturevalue("postgres")
    return found


def test_rows_of_many_keys_inside_the_sessions_transaction(target: DatabaseTarget) -> None:
    engine = db.create_engine(target)
    metadata.create_all(engine)
    rows = [{"link_id": f"L{number:05d}", "batch_id": batch,
             "holder": "nobody" if number % 10 == 0 else "S1"}
            for number, batch in enumerate(BATCHES)]
    try:
        with db.session_factory(engine)() as session:
            session.execute(links.insert(), rows)  # not committed: the same transaction sees it
            asked = [*BATCHES[::2], BATCHES[0], "no such batch"]
            found = OF_BATCHES.rows(session, asked)
            expected = {(row["link_id"], row["batch_id"]) for row in rows
                        if row["batch_id"] in set(asked) and row["holder"] != "nobody"}
            assert sorted(found) == sorted(expected)
            assert len(found) == len(expected)  # a key asked twice reads its rows once
            assert all(type(row) is tuple for row in found)
            assert OF_BATCHES.rows(session, []) == []
            session.rollback()
        with db.session_factory(engine)() as session:
            assert OF_BATCHES.rows(session, BATCHES) == []
    finally:
        engine.dispose()
