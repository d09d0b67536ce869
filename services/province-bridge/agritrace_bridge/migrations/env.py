"""Alembic environment of the province bridge (see agritrace_kernel.migrations)."""

import sqlalchemy as sa

from agritrace_bridge.adapters.orm import metadata
from agritrace_kernel.events.store import event_metadata
from agritrace_kernel.migrations import run_migrations

combined = sa.MetaData()
for source in (metadata, event_metadata):
    for table in source.tables.values():
        table.to_metadata(combined)

run_migrations(combined)
