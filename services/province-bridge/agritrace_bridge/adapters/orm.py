"""The bridge's tables (SQLAlchemy Core), in its province's own schema or SQLite file.
Migrations in ../migrations create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)

import_runs = sa.Table(
    "import_runs",
    metadata,
    sa.Column("import_id", sa.String(64), primary_key=True),
    sa.Column("province", sa.String(2), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    # The checkpoint: the provincial page token of the next page ("" first page or done).
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
    sa.Index("ix_import_runs_started", "started_at"),
)

# The report: one row per provincial record and run, written with the checkpoint it moves.
import_outcomes = sa.Table(
    "import_outcomes",
    metadata,
    sa.Column("import_id", sa.String(64), primary_key=True),
    sa.Column("source_record_id", sa.String(64), primary_key=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("subject_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("field", sa.String(200), nullable=False, server_default=""),
    sa.Column("reason", sa.String(1000), nullable=False, server_default=""),
    sa.Index("ix_import_outcomes_outcome", "import_id", "outcome", "source_record_id"),
)

# Per direction (inbound, outbound): what GetStatus reports beside the queues, updated in
# the transaction of each delivery or failure.
direction_stats = sa.Table(
    "direction_stats",
    metadata,
    sa.Column("direction", sa.String(16), primary_key=True),
    sa.Column("delivered", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("errors", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("last_success_at", TZ, nullable=True),
    sa.Column("last_error", sa.String(1000), nullable=False, server_default=""),
)

# Cursors of the provincial platform (e.g. the internal-trace cursor), moved in the
# transaction that stores what was read up to them.
cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

# Internal-trace records read from the province, kept until flow has them (store and
# forward). One row per record content: a record changed on the platform is a new row.
trace_inbox = sa.Table(
    "trace_inbox",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("record_id", sa.String(64), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("content", sa.Text(), nullable=False),  # the contract's JSON of the record
    sa.Column("received_at", TZ, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # PENDING, DELIVERED, REFUSED
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("outcome", sa.String(16), nullable=False, server_default=""),
    sa.Column("error", sa.String(1000), nullable=False, server_default=""),
    sa.Column("delivered_at", TZ, nullable=True),
    sa.UniqueConstraint("record_id", "content_hash", name="uq_trace_inbox_content"),
    sa.Index("ix_trace_inbox_state", "state", "seq"),
)

# National records for the province, waiting to be pushed (or pushed).
def _national_record() -> list[sa.Column[object]]:
    """A national record's columns, in the queue and among the dead letters."""
    return [
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("occur_time", TZ, nullable=False),
        sa.Column("subject_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("payload", sa.Text(), nullable=False),  # JSON
        sa.Column("enqueued_at", TZ, nullable=False),
    ]


outbound_queue = sa.Table(
    "outbound_queue",
    metadata,
    *_national_record(),
    sa.Column("state", sa.String(16), nullable=False),  # PENDING, DELIVERED
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", TZ, nullable=False),
    sa.Column("last_error", sa.String(1000), nullable=False, server_default=""),
    sa.Column("delivered_at", TZ, nullable=True),
    sa.Index("ix_outbound_due", "state", "next_attempt_at"),
)

# National records that failed too often (or were refused): kept for an operator, put back
# in the queue by ReplayDeadLetters.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    *_national_record(),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.String(1000), nullable=False),
    sa.Column("dead_at", TZ, nullable=False),
)

# Security posture reports and incidents of the provincial platform.
security_events = sa.Table(
    "security_events",
    metadata,
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
