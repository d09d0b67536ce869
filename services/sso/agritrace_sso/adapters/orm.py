"""The sso tables (SQLAlchemy Core). Migrations in ../migrations create them; the domain
never sees these."""

from __future__ import annotations

import sqlalchemy as sa

from agritrace_kernel.idempotency import request_log_table

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(100), nullable=False, server_default=""),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("subject_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("jurisdiction", sa.String(6), nullable=False, server_default=""),
    sa.Column("roles", sa.String(100), nullable=False, server_default=""),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    # argon2id hash (PHC string); never the password.
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
    sa.Index("ix_accounts_jurisdiction", "jurisdiction", "username"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("session_id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("expires_at", TZ, nullable=False),
    sa.Column("revoked_at", TZ, nullable=True),
    sa.Index("ix_sessions_account", "account_id", "revoked_at"),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    # SHA-256 of the opaque token: the token itself is never stored.
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(40), nullable=False, index=True),
    sa.Column("issued_at", TZ, nullable=False),
    sa.Column("spent_at", TZ, nullable=True),
)

revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("session_id", sa.String(40), nullable=False, unique=True),
    sa.Column("revoked_at", TZ, nullable=False),
    sa.Index("ix_revocations_time", "revoked_at", "seq"),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(40), primary_key=True),
    # Private JWK sealed with AES-GCM (key derived from AGRITRACE_PII_KEY).
    sa.Column("private_sealed", sa.Text(), nullable=False),
    sa.Column("public_jwk", sa.Text(), nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("retired_at", TZ, nullable=True),
)

platforms = sa.Table(
    "platforms",
    metadata,
    sa.Column("platform_id", sa.String(40), primary_key=True),
    sa.Column("province", sa.String(2), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("url", sa.String(500), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
    sa.Index("ix_platforms_province", "province", "platform_id"),
)

request_log = request_log_table(metadata)
