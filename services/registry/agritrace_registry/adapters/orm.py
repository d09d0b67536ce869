"""The registry's tables (SQLAlchemy Core). Migrations in ../migrations create them; the
domain never sees these."""

from __future__ import annotations

import sqlalchemy as sa

from agritrace_kernel.idempotency import request_log_table

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)

subjects = sa.Table(
    "subjects",
    metadata,
    sa.Column("subject_id", sa.String(16), primary_key=True),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # Normalised name, for spotting one producer registered under two keys.
    sa.Column("name_key", sa.String(200), nullable=False),
    sa.Column("division_code", sa.String(6), nullable=False),
    sa.Column("credit_code", sa.String(18), nullable=True, unique=True),
    # Keyed digest (HMAC) of the resident ID number: unique, for look-ups without clear text.
    sa.Column("resident_id_digest", sa.String(64), nullable=True, unique=True),
    sa.Column("resident_id_sealed", sa.Text(), nullable=True),
    sa.Column("resident_id_masked", sa.String(18), nullable=False, server_default=""),
    sa.Column("address", sa.String(300), nullable=False, server_default=""),
    sa.Column("legal_representative", sa.String(100), nullable=False, server_default=""),
    sa.Column("contact_phone_sealed", sa.Text(), nullable=True),
    sa.Column("contact_phone_masked", sa.String(24), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_reason", sa.String(500), nullable=False, server_default=""),
    sa.Column("review_flags", sa.String(200), nullable=False, server_default=""),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
    sa.Index("ix_subjects_division", "division_code", "subject_id"),
    sa.Index("ix_subjects_status", "status", "subject_id"),
    sa.Index("ix_subjects_name_key", "name_key", "division_code"),
)

provenance = sa.Table(
    "subject_provenance",
    metadata,
    sa.Column("source", sa.String(16), primary_key=True),
    sa.Column("source_record_id", sa.String(64), primary_key=True),
    sa.Column("subject_id", sa.String(16), primary_key=True),
    sa.Column("outcome", sa.String(8), nullable=False),
    sa.Column("import_id", sa.String(64), nullable=True),
    sa.Column("first_seen", TZ, nullable=False),
    sa.Index("ix_provenance_subject", "subject_id"),
    sa.Index("ix_provenance_import", "import_id"),
)

conflicts = sa.Table(
    "import_conflicts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("subject_id", sa.String(16), nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("source_record_id", sa.String(64), nullable=False),
    sa.Column("import_id", sa.String(64), nullable=True),
    sa.Column("differing_fields", sa.String(100), nullable=False),
    sa.Column("incoming", sa.Text(), nullable=False),
    sa.Column("existing", sa.Text(), nullable=False),
    sa.Column("recorded_at", TZ, nullable=False),
    sa.UniqueConstraint("source", "source_record_id", name="uq_conflicts_source_record"),
)

request_log = request_log_table(metadata)

import_runs = sa.Table(
    "import_runs",
    metadata,
    sa.Column("import_id", sa.String(64), primary_key=True),
    sa.Column("source_province", sa.String(2), nullable=False),
    sa.Column("received", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("merged", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("conflicts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("rejected", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("started_at", TZ, nullable=True),
    sa.Column("finished_at", TZ, nullable=True),
)

duplicate_suspicions = sa.Table(
    "duplicate_suspicions",
    metadata,
    sa.Column("subject_id", sa.String(16), primary_key=True),
    sa.Column("other_subject_id", sa.String(16), primary_key=True),
    sa.Column("recorded_at", TZ, nullable=False),
)
