"""What the sso use cases need from the outside world: repositories and the unit of work,
the password hasher, the token codec (signing keys and JWTs), the login throttle. Adapters in
../adapters implement these; unit tests use small fakes or cheap real adapters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self

from agritrace_kernel.events.model import Event
from agritrace_sso.domain.model import (
    Account,
    AccountKind,
    Platform,
    RefreshToken,
    Revocation,
    Session,
)


@dataclass(frozen=True)
class AccountQuery:
    """Accounts of some kinds (empty: all) whose jurisdiction starts with a prefix, after a
    username, ordered by username."""

    kinds: frozenset[AccountKind] = frozenset()
    jurisdiction_prefix: str = ""
    after_username: str = ""
    limit: int = 50


@dataclass(frozen=True)
class RequestRecord:
    operation: str
    fingerprint: str
    result_id: str


@dataclass
class SigningKey:
    """A signing key: its private JWK sealed at rest, its public JWK as JSON."""

    kid: str
    private_sealed: str
    public_jwk: str
    created_at: datetime
    retired_at: datetime | None = None


class AccountRepository(Protocol):
    def add(self, account: Account) -> None: ...
    def get(self, account_id: str) -> Account | None: ...
    def by_username(self, username: str) -> Account | None: ...
    def save(self, account: Account, expected_version: int) -> None: ...
    def find(self, query: AccountQuery) -> list[Account]: ...


class SessionRepository(Protocol):
    def add(self, session: Session) -> None: ...
    def get(self, session_id: str) -> Session | None: ...
    def save(self, session: Session) -> None: ...
    def unrevoked_of(self, account_id: str, expiring_after: datetime) -> list[Session]: ...
    def add_refresh(self, token: RefreshToken) -> None: ...
    def refresh_by_digest(self, digest: str) -> RefreshToken | None: ...
    def spend_refresh(self, digest: str, now: datetime) -> bool:
        """Marks an unspent refresh token spent; False if it already was (a concurrent
        refresh spent it first: treat as reuse)."""
        ...


class RevocationLog(Protocol):
    def add(self, session_id: str, revoked_at: datetime) -> None: ...
    def after(self, revoked_at: datetime, seq: int, limit: int) -> list[Revocation]: ...
    def is_revoked(self, session_id: str) -> bool: ...


class SigningKeys(Protocol):
    def add(self, key: SigningKey) -> None: ...
    def save(self, key: SigningKey) -> None: ...
    def all(self) -> list[SigningKey]: ...


class PlatformRepository(Protocol):
    def add(self, platform: Platform) -> None: ...
    def get(self, platform_id: str) -> Platform | None: ...
    def save(self, platform: Platform, expected_version: int) -> None: ...
    def page(self, after: tuple[str, str] | None, limit: int) -> list[Platform]: ...


class RequestLog(Protocol):
    def find(self, request_id: str) -> RequestRecord | None: ...
    def record(self, request_id: str, record: RequestRecord) -> None: ...


class UnitOfWork(Protocol):
    # Read-only members, so that implementations may hold narrower types.
    @property
    def accounts(self) -> AccountRepository: ...
    @property
    def sessions(self) -> SessionRepository: ...
    @property
    def revocations(self) -> RevocationLog: ...
    @property
    def keys(self) -> SigningKeys: ...
    @property
    def platforms(self) -> PlatformRepository: ...
    @property
    def requests(self) -> RequestLog: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None: ...
    def publish(self, event: Event) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...
    def verify(self, password_hash: str, password: str) -> bool: ...
    def needs_rehash(self, password_hash: str) -> bool: ...


class InvalidToken(Exception):
    """A token that does not verify (bad signature, unknown key, malformed)."""


class TokenCodec(Protocol):
    """Signing keys and compact JWTs (EdDSA over Ed25519, `kid` in the header)."""

    def new_key(self, kid: str, now: datetime) -> SigningKey: ...
    def sign(self, claims: Mapping[str, Any], key: SigningKey) -> str: ...
    def verify(self, token: str, public_jwks: Sequence[str]) -> dict[str, Any]:
        """The claims of a token whose signature one of the keys verifies; raises
        InvalidToken otherwise. Time-based claims are checked by the caller."""
        ...


class LoginThrottle(Protocol):
    """Failed sign-ins per username: after `limit` failures within the window the username is
    locked for the lock time. Keyed by the name typed, known or not."""

    def is_locked(self, username: str, now: datetime) -> bool: ...
    def record_failure(self, username: str, now: datetime) -> bool:
        """Counts a failure; True if it locked the username."""
        ...
    def reset(self, username: str) -> None: ...
