"""The coding service's tables (SQLAlchemy Core). Migrations in ../migrations create them.

`codes` is the big one (a million rows per large issuance), written by COPY: its rows carry
only what differs per code; what is common to an issuance (subject, batch bound at issue) is
read from `issuances` by join."""

from __future__ import annotations

import sqlalchemy as sa

from agritrace_kernel.idempotency import request_log_table

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)
ID = sa.BigInteger()

issuances = sa.Table(
    "issuances",
    metadata,
    sa.Column("issuance_id", ID, primary_key=True, autoincrement=False),
    sa.Column("subject_id", sa.String(16), nullable=False),
    # The subject's county code at issue: regulators' jurisdiction over the codes.
    sa.Column("subject_division", sa.String(6), nullable=False),
    sa.Column("province", sa.String(2), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("quantity", sa.BigInteger(), nullable=False),
    sa.Column("product_batch_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("printer_subject_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("line_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
    # Production-line sessions: last message seen, and when the session ended.
    sa.Column("last_activity_at", TZ, nullable=True),
    sa.Column("line_closed_at", TZ, nullable=True),
    sa.Index("ix_issuances_subject", "subject_id", "created_at", "issuance_id"),
    sa.Index("ix_issuances_printer", "printer_subject_id", "created_at", "issuance_id"),
    sa.Index("ix_issuances_open_lines", "mode", "line_closed_at", "last_activity_at"),
)

codes = sa.Table(
    "codes",
    metadata,
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("issuance_id", ID, nullable=False),
    sa.Column("serial", sa.BigInteger(), nullable=False),
    sa.Column("state", sa.String(9), nullable=False),
    # Set when activation binds the code; NULL: the issuance's batch (if any).
    sa.Column("product_batch_id", sa.String(64), nullable=True),
    sa.Column("changed_at", TZ, nullable=True),
    sa.Column("void_reason", sa.String(500), nullable=True),
    sa.UniqueConstraint("issuance_id", "serial", name="uq_codes_issuance_serial"),
)

derivations = sa.Table(
    "derivations",
    metadata,
    # A code is consumed by at most one derivation.
    sa.Column("parent_code", sa.String(16), primary_key=True),
    sa.Column("issuance_id", ID, nullable=False, index=True),
    sa.Column("reason", sa.String(8), nullable=False),
)

request_log = request_log_table(metadata)
