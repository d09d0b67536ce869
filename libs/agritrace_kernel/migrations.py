"""The body of every service's Alembic env.py: run against the connection the kernel opened
(`agritrace_kernel.db.migrate`), with the version table in the service's own schema."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context


def run_migrations(target_metadata: sa.MetaData) -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `python -m <service> migrate`")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=config.attributes.get("schema"),
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
