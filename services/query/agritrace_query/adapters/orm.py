"""The query service's read model and query log (SQLAlchemy Core). Migrations in
../migrations create them.

The read model is derived data: every table except `query_log` is rebuilt from the source
services' events by `python -m agritrace_query rebuild`. Rows carry the ids of the source
records, never personal data (ID numbers, phone numbers stay in registry and flow).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# -- read model (rebuildable) ---------------------------------------------------------------

subjects = sa.Table(
    "subjects",
    metadata,
    sa.Column("subject_id", sa.String(16), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("division_code", sa.String(6), nullable=False),
    sa.Column("province", sa.String(2), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    # The registry's version of the subject: an older event never overwrites a newer one.
    sa.Column("version", sa.Integer(), nullable=False),
    # When the read model first learnt of the subject: the earliest event about it (normally
    # its registration or import); `registered_division` is where its `subjects_registered`
    # count went, so a count can move when an earlier event arrives late.
    sa.Column("registered_at", TZ, nullable=False),
    sa.Column("registered_division", sa.String(6), nullable=False, server_default=""),
    sa.Index("ix_subjects_division", "division_code"),
)

# Events arrive in any order (one queue per event type): a batch's internal-trace records may
# come before the batch itself. Such a row holds only what those records said: `created_at`
# is NULL (and the descriptive columns empty) until batch_created or batch_transformed fills
# them in. Readers treat a row with `created_at IS NULL` as a batch not known yet.
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(16), primary_key=True),
    sa.Column("subject_id", sa.String(16), nullable=False, server_default="", index=True),
    sa.Column("subject_division", sa.String(6), nullable=False, server_default=""),
    sa.Column("product_code", sa.String(16), nullable=False, server_default=""),
    sa.Column("product_name", sa.String(100), nullable=False, server_default=""),
    sa.Column("category", sa.String(100), nullable=False, server_default=""),
    # decimal as text, with `unit`
    sa.Column("quantity", sa.String(24), nullable=False, server_default=""),
    sa.Column("unit", sa.String(8), nullable=False, server_default=""),
    sa.Column("production_date", sa.Date(), nullable=True),
    sa.Column("origin_division", sa.String(6), nullable=False, server_default=""),
    # The compliance certificate as JSON (certificate_id, producer_name, issue_date,
    # commitment, basis, test_result; the contact phone only masked), "" when none.
    sa.Column("certificate", sa.Text(), nullable=False, server_default=""),
    sa.Column("parent_batch_ids", sa.Text(), nullable=False, server_default=""),  # comma-joined
    sa.Column("flags", sa.Text(), nullable=False, server_default=""),  # comma-joined
    # When the event that set `flags` occurred: an older event never overwrites newer flags.
    sa.Column("flags_at", TZ, nullable=True),
    sa.Column("inspections_passed", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("inspections_failed", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_inspection_at", TZ, nullable=True),
    # "PASSED" or "FAILED", then ": " and the inspection's summary when it has one; "" when
    # the record said no result.
    sa.Column("last_inspection_result", sa.String(500), nullable=False, server_default=""),
    sa.Column("created_at", TZ, nullable=True),
)

codes = sa.Table(
    "codes",
    metadata,
    sa.Column("code", sa.String(16), primary_key=True),
    # "" until codes_issued (or codes_derived) arrived, when a later event came first.
    sa.Column("issuance_id", sa.String(40), nullable=False, server_default=""),
    sa.Column("province", sa.String(2), nullable=False),
    sa.Column("subject_id", sa.String(16), nullable=False, server_default=""),
    # ISSUED PRINTED ACTIVE CONSUMED VOID: a code only moves forward in that order (CONSUMED
    # and VOID are both final), so the furthest state any event reported is the current one.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("batch_id", sa.String(16), nullable=False, server_default="", index=True),
    sa.Column("updated_at", TZ, nullable=False),  # when the code reached its state
)

code_lineage = sa.Table(
    "code_lineage",
    metadata,
    sa.Column("parent_code", sa.String(16), primary_key=True),
    sa.Column("child_code", sa.String(16), primary_key=True),
    sa.Index("ix_code_lineage_child", "child_code"),
)

shipments = sa.Table(
    "shipments",
    metadata,
    sa.Column("shipment_id", sa.String(40), primary_key=True),
    sa.Column("batch_id", sa.String(16), nullable=False, index=True),
    sa.Column("seller_subject_id", sa.String(16), nullable=False, index=True),
    sa.Column("buyer_subject_id", sa.String(16), nullable=False, index=True),
    sa.Column("seller_province", sa.String(2), nullable=False, server_default=""),
    sa.Column("buyer_province", sa.String(2), nullable=False, server_default=""),
    sa.Column("quantity", sa.String(24), nullable=False, server_default=""),
    sa.Column("unit", sa.String(8), nullable=False, server_default=""),
    sa.Column("code_count", sa.Integer(), nullable=False, server_default="0"),
    # NULL while only batch_received arrived (events come in any order): the shipment's
    # details follow with batch_shipped.
    sa.Column("ship_time", TZ, nullable=True),
    sa.Column("received_at", TZ, nullable=True),
)

transformation_inputs = sa.Table(
    "transformation_inputs",
    metadata,
    sa.Column("transformation_id", sa.String(40), primary_key=True),
    sa.Column("input_batch_id", sa.String(16), primary_key=True),
    sa.Column("output_batch_id", sa.String(16), nullable=False, index=True),
    sa.Column("subject_id", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("quantity", sa.String(24), nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    sa.Column("occurred_at", TZ, nullable=False),
    sa.Index("ix_transformation_inputs_input", "input_batch_id"),
)

market_entries = sa.Table(
    "market_entries",
    metadata,
    sa.Column("entry_id", sa.String(40), primary_key=True),
    sa.Column("market_subject_id", sa.String(16), nullable=False, index=True),
    sa.Column("market_province", sa.String(2), nullable=False),
    sa.Column("batch_id", sa.String(16), nullable=False, server_default="", index=True),
    sa.Column("code", sa.String(16), nullable=False, server_default=""),
    sa.Column("admitted", sa.Boolean(), nullable=False),
    sa.Column("refusal", sa.String(24), nullable=False, server_default=""),
    sa.Column("check_time", TZ, nullable=False),
)

# Statistics: one counter per county division, day (China time) and metric, bumped by the
# event handlers (the inbox makes each bump happen once); a period's figures for any level
# are sums over the division-code prefix.
daily_counts = sa.Table(
    "daily_counts",
    metadata,
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("division_code", sa.String(6), primary_key=True),
    sa.Column("metric", sa.String(40), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Index("ix_daily_counts_division", "division_code", "day"),
)

# Counts made before the read model knew the subject concerned (events of different sources
# arrive in any order): they went to the subject's province (or nowhere: ""), and move to its
# county when the subject's registry event arrives.
held_counts = sa.Table(
    "held_counts",
    metadata,
    sa.Column("subject_id", sa.String(16), primary_key=True),
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("metric", sa.String(40), primary_key=True),
    sa.Column("division_code", sa.String(6), primary_key=True),  # where they went meanwhile
    sa.Column("count", sa.BigInteger(), nullable=False),
)

# Which subjects did something on which day (issued or activated codes, created, shipped,
# received, transformed, checked goods at a gate): the "active subjects" of a period.
subject_activity = sa.Table(
    "subject_activity",
    metadata,
    sa.Column("subject_id", sa.String(16), primary_key=True),
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("division_code", sa.String(6), nullable=False),
    sa.Index("ix_subject_activity_division", "division_code", "day"),
)

# Where a rebuild (replay from the source services' event logs) has got to, per source, so
# an interrupted rebuild resumes instead of starting over. A rebuild writes a row for every
# source when it starts; when all are `done` it has finished, and the next one starts afresh.
replay_positions = sa.Table(
    "replay_positions",
    metadata,
    sa.Column("source", sa.String(40), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),  # of the last event applied
    # The source's token for the page after it ("" before the first page): log tokens are
    # opaque, so the rebuild resumes with the token the source gave.
    sa.Column("page_token", sa.Text(), nullable=False, server_default=""),
    sa.Column("done", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("updated_at", TZ, nullable=False),
)

READ_MODEL_TABLES = (subjects, batches, codes, code_lineage, shipments, transformation_inputs,
                     market_entries, daily_counts, held_counts, subject_activity,
                     replay_positions)

# -- the query log (查询记录): append-only, never rebuilt ----------------------------------

query_log = sa.Table(
    "query_log",
    metadata,
    sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
    sa.Column("logged_at", TZ, nullable=False),
    # Account id of the asker, or "anon:<fingerprint>" (a keyed hash of the client's address
    # and user agent; the address itself is not stored).
    sa.Column("asker", sa.String(80), nullable=False),
    sa.Column("role", sa.String(24), nullable=False),  # CONSUMER or the principal kind
    sa.Column("asker_jurisdiction", sa.String(6), nullable=False, server_default=""),
    sa.Column("rpc", sa.String(40), nullable=False),
    sa.Column("target", sa.String(80), nullable=False),  # the code, batch id, division asked
    # The division of what was asked about (a batch's origin, a code's province): what a
    # regulator's ListQueryLogs filters on.
    sa.Column("target_division", sa.String(6), nullable=False, server_default=""),
    sa.Column("scope", sa.String(200), nullable=False),  # what was returned, e.g. ORIGIN_ONLY
    sa.Column("outcome", sa.String(24), nullable=False),  # OK, NOT_FOUND, DENIED, ...
    sa.Column("place", sa.String(40), nullable=False, server_default=""),  # where from
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    # Prefix matches (a regulator's jurisdiction) use the index on PostgreSQL only with
    # text_pattern_ops (the database's collation is not C).
    sa.Index("ix_query_log_division", "target_division", "seq",
             postgresql_ops={"target_division": "text_pattern_ops"}),
    # Statistics count a period's scans.
    sa.Index("ix_query_log_rpc_time", "rpc", "logged_at"),
    sa.Index("ix_query_log_asker", "asker", "seq"),
)
