"""SQLAlchemy adapters of the sso ports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from agritrace_kernel.db import SqlAlchemyUnitOfWork
from agritrace_kernel.errors import ConcurrencyConflict
from agritrace_kernel.idempotency import SqlAlchemyRequestLog
from agritrace_sso.adapters import orm
from agritrace_sso.domain.model import (
    Account,
    AccountKind,
    OnboardingStage,
    Platform,
    RefreshToken,
    RegulatorRole,
    Revocation,
    Session,
)
from agritrace_sso.service_layer.ports import AccountQuery, SigningKey

Row = Mapping[str, Any] | sa.RowMapping


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _account_row(account: Account) -> dict[str, Any]:
    return {
        "account_id": account.account_id,
        "username": account.username,
        "display_name": account.display_name,
        "kind": account.kind.value,
        "subject_id": account.subject_id,
        "jurisdiction": account.jurisdiction,
        "roles": ",".join(account.role_names),
        "disabled": account.disabled,
        "password_hash": account.password_hash,
        "version": account.version,
        "created_at": account.created_at,
        "updated_at": account.updated_at,
    }


def _to_account(row: Row) -> Account:
    return Account(
        account_id=row["account_id"],
        username=row["username"],
        display_name=row["display_name"],
        kind=AccountKind(row["kind"]),
        password_hash=row["password_hash"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        subject_id=row["subject_id"],
        jurisdiction=row["jurisdiction"],
        roles=tuple(RegulatorRole(r) for r in row["roles"].split(",") if r),
        disabled=bool(row["disabled"]),
        version=row["version"],
    )


class SqlAlchemyAccountRepository:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    def add(self, account: Account) -> None:
        self.session.execute(orm.accounts.insert().values(**_account_row(account)))

    def get(self, account_id: str) -> Account | None:
        return self._one(orm.accounts.c.account_id == account_id)

    def by_username(self, username: str) -> Account | None:
        return self._one(orm.accounts.c.username == username)

    def _one(self, condition: sa.ColumnElement[bool]) -> Account | None:
        row = self.session.execute(sa.select(orm.accounts).where(condition)).mappings().first()
        return None if row is None else _to_account(row)

    def save(self, account: Account, expected_version: int) -> None:
        row = _account_row(account)
        del row["account_id"], row["created_at"]
        result = self.session.execute(
            orm.accounts.update()
            .where(orm.accounts.c.account_id == account.account_id)
            .where(orm.accounts.c.version == expected_version)
            .values(**row)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ConcurrencyConflict("the account changed concurrently; read it again")

    def find(self, query: AccountQuery) -> list[Account]:
        table = orm.accounts
        statement = sa.select(table).order_by(table.c.username).limit(query.limit)
        if query.kinds:
            statement = statement.where(table.c.kind.in_(sorted(k.value for k in query.kinds)))
        if query.jurisdiction_prefix:
            statement = statement.where(
                table.c.jurisdiction.startswith(query.jurisdiction_prefix, autoescape=True)
            )
        if query.after_username:
            statement = statement.where(table.c.username > query.after_username)
        return [_to_account(row) for row in self.session.execute(statement).mappings()]


def _to_session(row: Row) -> Session:
    return Session(
        session_id=row["session_id"],
        account_id=row["account_id"],
        created_at=_utc(row["created_at"]),
        expires_at=_utc(row["expires_at"]),
        revoked_at=_utc_or_none(row["revoked_at"]),
    )


class SqlAlchemySessionRepository:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    def add(self, session: Session) -> None:
        self.session.execute(orm.sessions.insert().values(
            session_id=session.session_id, account_id=session.account_id,
            created_at=session.created_at, expires_at=session.expires_at,
            revoked_at=session.revoked_at))

    def get(self, session_id: str) -> Session | None:
        row = self.session.execute(
            sa.select(orm.sessions).where(orm.sessions.c.session_id == session_id)
        ).mappings().first()
        return None if row is None else _to_session(row)

    def save(self, session: Session) -> None:
        self.session.execute(
            orm.sessions.update().where(orm.sessions.c.session_id == session.session_id)
            .values(expires_at=session.expires_at, revoked_at=session.revoked_at)
        )

    def unrevoked_of(self, account_id: str, expiring_after: datetime) -> list[Session]:
        table = orm.sessions
        rows = self.session.execute(
            sa.select(table)
            .where(table.c.account_id == account_id)
            .where(table.c.revoked_at.is_(None))
            .where(table.c.expires_at > expiring_after)
            .order_by(table.c.created_at, table.c.session_id)
        ).mappings()
        return [_to_session(row) for row in rows]

    def add_refresh(self, token: RefreshToken) -> None:
        self.session.execute(orm.refresh_tokens.insert().values(
            digest=token.digest, session_id=token.session_id, issued_at=token.issued_at,
            spent_at=token.spent_at))

    def refresh_by_digest(self, digest: str) -> RefreshToken | None:
        row = self.session.execute(
            sa.select(orm.refresh_tokens).where(orm.refresh_tokens.c.digest == digest)
        ).mappings().first()
        if row is None:
            return None
        return RefreshToken(row["digest"], row["session_id"], _utc(row["issued_at"]),
                            _utc_or_none(row["spent_at"]))

    def spend_refresh(self, digest: str, now: datetime) -> bool:
        table = orm.refresh_tokens
        result = self.session.execute(
            table.update().where(table.c.digest == digest).where(table.c.spent_at.is_(None))
            .values(spent_at=now)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


class SqlAlchemyRevocationLog:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    def add(self, session_id: str, revoked_at: datetime) -> None:
        self.session.execute(orm.revocations.insert().values(session_id=session_id,
                                                             revoked_at=revoked_at))

    def after(self, revoked_at: datetime, seq: int, limit: int) -> list[Revocation]:
        table = orm.revocations
        rows = self.session.execute(
            sa.select(table)
            .where(sa.or_(table.c.revoked_at > revoked_at,
                          sa.and_(table.c.revoked_at == revoked_at, table.c.seq > seq)))
            .order_by(table.c.revoked_at, table.c.seq)
            .limit(limit)
        ).mappings()
        return [Revocation(row["session_id"], _utc(row["revoked_at"]), row["seq"])
                for row in rows]

    def is_revoked(self, session_id: str) -> bool:
        return self.session.execute(
            sa.select(orm.revocations.c.seq).where(orm.revocations.c.session_id == session_id)
        ).first() is not None


class SqlAlchemySigningKeys:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    def add(self, key: SigningKey) -> None:
        self.session.execute(orm.signing_keys.insert().values(
            kid=key.kid, private_sealed=key.private_sealed, public_jwk=key.public_jwk,
            created_at=key.created_at, retired_at=key.retired_at))

    def save(self, key: SigningKey) -> None:
        self.session.execute(
            orm.signing_keys.update().where(orm.signing_keys.c.kid == key.kid)
            .values(retired_at=key.retired_at)
        )

    def all(self) -> list[SigningKey]:
        rows = self.session.execute(
            sa.select(orm.signing_keys).order_by(orm.signing_keys.c.created_at)
        ).mappings()
        return [
            SigningKey(row["kid"], row["private_sealed"], row["public_jwk"],
                       _utc(row["created_at"]), _utc_or_none(row["retired_at"]))
            for row in rows
        ]


def _platform_row(platform: Platform) -> dict[str, Any]:
    return {
        "platform_id": platform.platform_id,
        "province": platform.province,
        "name": platform.name,
        "url": platform.url,
        "stage": platform.stage.value,
        "version": platform.version,
        "created_at": platform.created_at,
        "updated_at": platform.updated_at,
    }


def _to_platform(row: Row) -> Platform:
    return Platform(
        platform_id=row["platform_id"],
        province=row["province"],
        name=row["name"],
        url=row["url"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        stage=OnboardingStage(row["stage"]),
        version=row["version"],
    )


class SqlAlchemyPlatformRepository:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    def add(self, platform: Platform) -> None:
        self.session.execute(orm.platforms.insert().values(**_platform_row(platform)))

    def get(self, platform_id: str) -> Platform | None:
        row = self.session.execute(
            sa.select(orm.platforms).where(orm.platforms.c.platform_id == platform_id)
        ).mappings().first()
        return None if row is None else _to_platform(row)

    def save(self, platform: Platform, expected_version: int) -> None:
        row = _platform_row(platform)
        del row["platform_id"], row["created_at"]
        result = self.session.execute(
            orm.platforms.update()
            .where(orm.platforms.c.platform_id == platform.platform_id)
            .where(orm.platforms.c.version == expected_version)
            .values(**row)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ConcurrencyConflict("the platform changed concurrently; read it again")

    def page(self, after: tuple[str, str] | None, limit: int) -> list[Platform]:
        table = orm.platforms
        statement = (
            sa.select(table).order_by(table.c.province, table.c.platform_id).limit(limit)
        )
        if after is not None:
            statement = statement.where(sa.tuple_(table.c.province, table.c.platform_id)
                                        > sa.tuple_(*after))
        return [_to_platform(row) for row in self.session.execute(statement).mappings()]


class SsoUnitOfWork(SqlAlchemyUnitOfWork):
    accounts: SqlAlchemyAccountRepository
    sessions: SqlAlchemySessionRepository
    revocations: SqlAlchemyRevocationLog
    keys: SqlAlchemySigningKeys
    platforms: SqlAlchemyPlatformRepository
    requests: SqlAlchemyRequestLog

    def __init__(self, session_factory: sessionmaker[DbSession],
                 after_commit: Callable[[], None] | None = None) -> None:
        super().__init__(session_factory, after_commit)

    def _open(self, session: DbSession) -> None:
        self.accounts = SqlAlchemyAccountRepository(session)
        self.sessions = SqlAlchemySessionRepository(session)
        self.revocations = SqlAlchemyRevocationLog(session)
        self.keys = SqlAlchemySigningKeys(session)
        self.platforms = SqlAlchemyPlatformRepository(session)
        self.requests = SqlAlchemyRequestLog(session, orm.request_log)
