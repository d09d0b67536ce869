"""The flow service's tables (SQLAlchemy Core). Migrations in ../migrations create them."""

from __future__ import annotations

import sqlalchemy as sa

from agritrace_kernel.idempotency import request_log_table

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)
AMOUNT = sa.Numeric(18, 3)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(16), primary_key=True),
    sa.Column("subject_id", sa.String(16), nullable=False),
    sa.Column("subject_division", sa.String(6), nullable=False),
    sa.Column("product_code", sa.String(16), nullable=False),
    sa.Column("product_name", sa.String(100), nullable=False),
    sa.Column("category", sa.String(100), nullable=False),
    sa.Column("amount", AMOUNT, nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    sa.Column("production_date", sa.Date(), nullable=False),
    sa.Column("origin_division", sa.String(6), nullable=False),
    # The compliance certificate (承诺达标合格证); NULL columns when there is none.
    sa.Column("certificate_id", sa.String(64), nullable=True, unique=True),
    sa.Column("producer_name", sa.String(200), nullable=True),
    sa.Column("contact_phone_masked", sa.String(24), nullable=True),
    sa.Column("certificate_issue_date", sa.Date(), nullable=True),
    sa.Column("commitment", sa.String(1000), nullable=True),
    sa.Column("certificate_basis", sa.String(24), nullable=True),
    sa.Column("test_result", sa.String(500), nullable=True),
    sa.Column("parent_batch_ids", sa.String(1000), nullable=False, server_default=""),
    sa.Column("flags", sa.String(200), nullable=False, server_default=""),
    sa.Column("code_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created_at", TZ, nullable=False),
    # The latest harvest or slaughter record's time: with `flags`, what judging the flags of
    # further records needs to know of the earlier ones (migration 0002).
    sa.Column("ended_at", TZ, nullable=True),
    sa.Index("ix_batches_subject", "subject_id", "created_at"),
    sa.Index("ix_batches_product", "product_code", "created_at"),
)

batch_codes = sa.Table(
    "batch_codes",
    metadata,
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("batch_id", sa.String(16), nullable=False, index=True),
)

holdings = sa.Table(
    "holdings",
    metadata,
    sa.Column("batch_id", sa.String(16), primary_key=True),
    sa.Column("subject_id", sa.String(16), primary_key=True),
    sa.Column("amount", AMOUNT, nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
)

shipments = sa.Table(
    "shipments",
    metadata,
    sa.Column("shipment_id", sa.String(16), primary_key=True),
    sa.Column("batch_id", sa.String(16), nullable=False, index=True),
    sa.Column("seller_subject_id", sa.String(16), nullable=False),
    sa.Column("buyer_subject_id", sa.String(16), nullable=False, index=True),
    sa.Column("codes", sa.Text(), nullable=False, server_default=""),  # space-separated
    sa.Column("amount", AMOUNT, nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    sa.Column("ship_time", TZ, nullable=False),
    sa.Column("transport_document", sa.String(100), nullable=False, server_default=""),
    sa.Column("received_at", TZ, nullable=True),
)

market_entries = sa.Table(
    "market_entries",
    metadata,
    sa.Column("entry_id", sa.String(16), primary_key=True),
    sa.Column("market_subject_id", sa.String(16), nullable=False, index=True),
    sa.Column("admitted", sa.Boolean(), nullable=False),
    sa.Column("refusal", sa.String(32), nullable=True),
    sa.Column("reason", sa.String(300), nullable=False, server_default=""),
    sa.Column("batch_id", sa.String(16), nullable=False, server_default="", index=True),
    sa.Column("code", sa.String(16), nullable=False, server_default=""),
    sa.Column("certificate_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("check_time", TZ, nullable=False),
)

transformations = sa.Table(
    "transformations",
    metadata,
    sa.Column("transformation_id", sa.String(16), primary_key=True),
    sa.Column("subject_id", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("output_batch_id", sa.String(16), nullable=False, unique=True),
    sa.Column("output_codes", sa.Text(), nullable=False, server_default=""),
    sa.Column("occurred_at", TZ, nullable=False),
)

transformation_inputs = sa.Table(
    "transformation_inputs",
    metadata,
    sa.Column("transformation_id", sa.String(16), primary_key=True),
    sa.Column("position", sa.Integer(), primary_key=True),
    sa.Column("batch_id", sa.String(16), nullable=False, index=True),
    sa.Column("amount", AMOUNT, nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    sa.Column("codes", sa.Text(), nullable=False, server_default=""),
)

internal_traces = sa.Table(
    "internal_traces",
    metadata,
    sa.Column("source_province", sa.String(2), primary_key=True),
    sa.Column("source_record_id", sa.String(64), primary_key=True),
    sa.Column("batch_id", sa.String(16), nullable=False),
    sa.Column("activity", sa.String(16), nullable=False),
    sa.Column("occurred_at", TZ, nullable=False),
    sa.Column("details", sa.Text(), nullable=False, server_default="{}"),
    sa.Column("interval_days", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("passed", sa.Boolean(), nullable=False, server_default=sa.true()),
    # A batch's records, and of one kind (its pesticide and drug applications) directly.
    sa.Index("ix_internal_traces_batch_activity", "batch_id", "activity"),
)

history = sa.Table(
    "batch_history",
    metadata,
    sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(16), nullable=False),
    sa.Column("occurred_at", TZ, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("subject_id", sa.String(16), nullable=False),
    sa.Column("other_subject_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("record_id", sa.String(80), nullable=False),
    sa.Column("summary", sa.String(500), nullable=False, server_default=""),
    sa.Index("ix_history_batch", "batch_id", "occurred_at", "seq"),
)

imported_events = sa.Table(
    "imported_events",
    metadata,
    # Per importing subject: the eventID of an imported EPCIS event, or the canonical hash
    # standing for it (two partners may import the same document).
    sa.Column("subject_id", sa.String(16), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("event_time", TZ, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("event", sa.Text(), nullable=False),  # the event's JSON, as imported
    sa.Index("ix_imported_subject", "subject_id", "event_time"),
)

request_log = request_log_table(metadata)
