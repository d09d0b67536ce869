"""the bridge's tables: import runs and report, trace inbox, outbound queue and dead
letters, security events, statistics and cursors, and its event outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-29 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agritrace_kernel.events.store import create_event_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "import_runs",
        sa.Column("import_id", sa.String(64), primary_key=True),
        sa.Column("province", sa.String(2), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("page_token", sa.Text(), nullable=False, server_default=""),
        sa.Column("pages", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("total_size", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("merged", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("conflict", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("rejected", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(1000), nullable=False, server_default=""),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
    )
    op.create_index("ix_import_runs_started", "import_runs", ["started_at"])
    op.create_table(
        "import_outcomes",
        sa.Column("import_id", sa.String(64), primary_key=True),
        sa.Column("source_record_id", sa.String(64), primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("field", sa.String(200), nullable=False, server_default=""),
        sa.Column("reason", sa.String(1000), nullable=False, server_default=""),
    )
    op.create_index("ix_import_outcomes_outcome", "import_outcomes",
                    ["import_id", "outcome", "source_record_id"])
    op.create_table(
        "direction_stats",
        sa.Column("direction", sa.String(16), primary_key=True),
        sa.Column("delivered", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("errors", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_success_at", TZ, nullable=True),
        sa.Column("last_error", sa.String(1000), nullable=False, server_default=""),
    )
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "trace_inbox",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("outcome", sa.String(16), nullable=False, server_default=""),
        sa.Column("error", sa.String(1000), nullable=False, server_default=""),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.UniqueConstraint("record_id", "content_hash", name="uq_trace_inbox_content"),
    )
    op.create_index("ix_trace_inbox_state", "trace_inbox", ["state", "seq"])

    def outbound() -> list[sa.Column[object]]:
        """The columns of a national record, in the queue and among the dead letters."""
        return [
            sa.Column("record_id", sa.String(64), primary_key=True),
            sa.Column("type", sa.String(40), nullable=False),
            sa.Column("occur_time", TZ, nullable=False),
            sa.Column("subject_id", sa.String(32), nullable=False, server_default=""),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("enqueued_at", TZ, nullable=False),
        ]

    op.create_table(
        "outbound_queue",
        *outbound(),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("last_error", sa.String(1000), nullable=False, server_default=""),
        sa.Column("delivered_at", TZ, nullable=True),
    )
    op.create_index("ix_outbound_due", "outbound_queue", ["state", "next_attempt_at"])
    op.create_table(
        "dead_letters",
        *outbound(),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(1000), nullable=False),
        sa.Column("dead_at", TZ, nullable=False),
    )
    op.create_table(
        "security_events",
        sa.Column("event_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.String(200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False, server_default=""),
        sa.Column("occur_time", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False),
    )
    create_event_tables(op.get_bind())


def downgrade() -> None:
    for table in ("security_events", "dead_letters", "outbound_queue", "trace_inbox",
                  "cursors", "direction_stats"):
        op.drop_table(table)
    op.drop_table("import_outcomes")
    op.drop_table("import_runs")
