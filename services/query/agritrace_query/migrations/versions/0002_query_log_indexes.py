"""query log indexes: prefix matches of a jurisdiction, a period's scans

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 07:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_query_log_division", table_name="query_log")
    op.create_index("ix_query_log_division", "query_log", ["target_division", "seq"],
                    postgresql_ops={"target_division": "text_pattern_ops"})
    op.create_index("ix_query_log_rpc_time", "query_log", ["rpc", "logged_at"])


def downgrade() -> None:
    op.drop_index("ix_query_log_rpc_time", table_name="query_log")
    op.drop_index("ix_query_log_division", table_name="query_log")
    op.create_index("ix_query_log_division", "query_log", ["target_division", "seq"])
