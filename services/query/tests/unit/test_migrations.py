"""The query service's migrations create exactly the tables of orm.py and the kernel's event
tables: on SQLite, and on PostgreSQL in the service's own schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from agritrace_kernel import db
from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.events.store import event_metadata
from agritrace_query.adapters import orm
from agritrace_testing.fakes import load_beside

support = load_beside(__file__, "test_projections_support.py", "agritrace_query_projection_support")
engine = support.engine


def _expected() -> sa.MetaData:
    combined = sa.MetaData()
    for source in (orm.metadata, event_metadata):
        for table in source.tables.values():
            table.to_metadata(combined)
    return combined


def test_the_migrated_schema_is_the_one_orm_describes(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, _expected())
    assert differences == []


def test_the_tables_live_in_the_services_own_schema(engine: Engine) -> None:
    inspector = sa.inspect(engine)
    tables = set(inspector.get_table_names())
    assert tables == set(_expected().tables) | {"alembic_version"}
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            schema = connection.execute(sa.text("SELECT current_schema()")).scalar_one()
        assert str(schema).startswith("query_test_")
        public = set(inspector.get_table_names(schema="public"))
        assert not public & set(orm.metadata.tables)


def test_migrating_again_changes_nothing(tmp_path: Path) -> None:
    for migrated in support.migrated("sqlite", tmp_path):
        db.migrate(DatabaseTarget(str(migrated.url), None), support.MIGRATIONS)
        with migrated.connect() as connection:
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert [row[0] for row in versions] == ["0002"]
