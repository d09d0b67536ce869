"""Alembic environment of the query service (see agritrace_kernel.migrations)."""

import sqlalchemy as sa

from agritrace_kernel.events.store import event_metadata
from agritrace_kernel.migrations import run_migrations
from agritrace_query.adapters.orm import metadata

combined = sa.MetaData()
for source in (metadata, event_metadata):
    for table in source.tables.values():
        table.to_metadata(combined)

run_migrations(combined)
