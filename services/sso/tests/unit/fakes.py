"""Small hand-written fakes of the sso ports, as in "Architecture Patterns with Python".

`FakeDatabase` is the "database": the committed state plus the events published by committed
units of work. `FakeUnitOfWork` works on a private copy of that state and replaces the
committed state only on `commit()`, so a use case that fails half-way leaves nothing behind,
and only committed events count as published. Objects handed out are copies (a change counts
only once saved), `save` checks versions, unique keys (username) are enforced.

Password hashing and token signing use the real adapters (argon2 with cheap parameters,
joserfc): they are pure computations, and the tests check real hashes and real signatures.

This module is loaded by conftest.py (tests run with --import-mode=importlib, so the test
directory is not on sys.path); tests get these objects through its fixtures.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from datetime import datetime

import argon2

from agritrace_kernel.errors import AlreadyExists, ConcurrencyConflict
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import RequestRecord
from agritrace_sso.adapters.crypto import Argon2Hasher
from agritrace_sso.domain.model import Account, Platform, RefreshToken, Revocation, Session
from agritrace_sso.service_layer.ports import AccountQuery, SigningKey
from agritrace_testing.fakes import FakeUnitOfWorkBase

# -- collaborators -----------------------------------------------------------------------------


class SequentialIds:
    """Predictable ids: acct_000001, ses_000002, ..."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def __call__(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter):06d}"


class FakeSealer:
    """A reversible "seal" that visibly differs from the clear text."""

    PREFIX = "sealed:"

    def seal(self, value: str) -> str:
        return self.PREFIX + value[::-1]

    def unseal(self, sealed: str) -> str:
        if not sealed.startswith(self.PREFIX):
            raise ValueError("not sealed by FakeSealer")
        return sealed.removeprefix(self.PREFIX)[::-1]


class CountingHasher(Argon2Hasher):
    """argon2id with cheap parameters; counts verifications (unknown users must cost one)."""

    def __init__(self) -> None:
        super().__init__(argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
        self.verifications = 0
        self.hashed: list[str] = []

    def hash(self, password: str) -> str:
        self.hashed.append(password)
        return super().hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(password_hash, password)


# -- the "database" ----------------------------------------------------------------------------


@dataclass
class Tables:
    accounts: dict[str, Account] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)
    revocations: list[Revocation] = field(default_factory=list)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    platforms: dict[str, Platform] = field(default_factory=dict)
    requests: dict[str, RequestRecord] = field(default_factory=dict)


@dataclass
class FakeDatabase:
    committed: Tables = field(default_factory=Tables)
    published: list[Event] = field(default_factory=list)
    commits: int = 0

    def events_named(self, name: str) -> list[Event]:
        return [event for event in self.published if event.name == name]


def _duplicate(what: str) -> AlreadyExists:
    # What SqlAlchemyUnitOfWork raises for an IntegrityError.
    return AlreadyExists(f"duplicate {what}", reason="CONCURRENT_DUPLICATE")


class FakeAccountRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, account: Account) -> None:
        if account.account_id in self._t.accounts or self.by_username(account.username):
            raise _duplicate("account")
        self._t.accounts[account.account_id] = copy.deepcopy(account)

    def get(self, account_id: str) -> Account | None:
        return copy.deepcopy(self._t.accounts.get(account_id))

    def by_username(self, username: str) -> Account | None:
        for account in self._t.accounts.values():
            if account.username == username:
                return copy.deepcopy(account)
        return None

    def save(self, account: Account, expected_version: int) -> None:
        stored = self._t.accounts.get(account.account_id)
        if stored is None or stored.version != expected_version:
            raise ConcurrencyConflict("the account changed concurrently; read it again")
        self._t.accounts[account.account_id] = copy.deepcopy(account)

    def find(self, query: AccountQuery) -> list[Account]:
        rows = sorted(self._t.accounts.values(), key=lambda a: a.username)
        return [
            copy.deepcopy(a) for a in rows
            if (not query.kinds or a.kind in query.kinds)
            and a.jurisdiction.startswith(query.jurisdiction_prefix)
            and a.username > query.after_username
        ][: query.limit]


class FakeSessionRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, session: Session) -> None:
        if session.session_id in self._t.sessions:
            raise _duplicate("session")
        self._t.sessions[session.session_id] = copy.deepcopy(session)

    def get(self, session_id: str) -> Session | None:
        return copy.deepcopy(self._t.sessions.get(session_id))

    def save(self, session: Session) -> None:
        self._t.sessions[session.session_id] = copy.deepcopy(session)

    def unrevoked_of(self, account_id: str, expiring_after: datetime) -> list[Session]:
        return [
            copy.deepcopy(s) for s in self._t.sessions.values()
            if s.account_id == account_id and s.revoked_at is None
            and s.expires_at > expiring_after
        ]

    def add_refresh(self, token: RefreshToken) -> None:
        if token.digest in self._t.refresh:
            raise _duplicate("refresh token")
        self._t.refresh[token.digest] = copy.deepcopy(token)

    def refresh_by_digest(self, digest: str) -> RefreshToken | None:
        return copy.deepcopy(self._t.refresh.get(digest))

    def spend_refresh(self, digest: str, now: datetime) -> bool:
        token = self._t.refresh.get(digest)
        if token is None or token.spent_at is not None:
            return False
        token.spent_at = now
        return True


class FakeRevocationLog:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, session_id: str, revoked_at: datetime) -> None:
        if self.is_revoked(session_id):
            raise _duplicate("revocation")
        self._t.revocations.append(Revocation(session_id, revoked_at,
                                              len(self._t.revocations) + 1))

    def after(self, revoked_at: datetime, seq: int, limit: int) -> list[Revocation]:
        rows = sorted(self._t.revocations, key=lambda r: (r.revoked_at, r.seq))
        return [r for r in rows if (r.revoked_at, r.seq) > (revoked_at, seq)][:limit]

    def is_revoked(self, session_id: str) -> bool:
        return any(r.session_id == session_id for r in self._t.revocations)


class FakeSigningKeys:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, key: SigningKey) -> None:
        if key.kid in self._t.keys:
            raise _duplicate("kid")
        self._t.keys[key.kid] = copy.deepcopy(key)

    def save(self, key: SigningKey) -> None:
        self._t.keys[key.kid] = copy.deepcopy(key)

    def all(self) -> list[SigningKey]:
        return [copy.deepcopy(k) for k in sorted(self._t.keys.values(),
                                                 key=lambda k: k.created_at)]


class FakePlatformRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, platform: Platform) -> None:
        if platform.platform_id in self._t.platforms:
            raise _duplicate("platform")
        self._t.platforms[platform.platform_id] = copy.deepcopy(platform)

    def get(self, platform_id: str) -> Platform | None:
        return copy.deepcopy(self._t.platforms.get(platform_id))

    def save(self, platform: Platform, expected_version: int) -> None:
        stored = self._t.platforms.get(platform.platform_id)
        if stored is None or stored.version != expected_version:
            raise ConcurrencyConflict("the platform changed concurrently")
        self._t.platforms[platform.platform_id] = copy.deepcopy(platform)

    def page(self, after: tuple[str, str] | None, limit: int) -> list[Platform]:
        rows = sorted(self._t.platforms.values(), key=lambda p: (p.province, p.platform_id))
        return [copy.deepcopy(p) for p in rows
                if after is None or (p.province, p.platform_id) > after][:limit]


class FakeRequestLog:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def find(self, request_id: str) -> RequestRecord | None:
        return self._t.requests.get(request_id)

    def record(self, request_id: str, record: RequestRecord) -> None:
        if request_id in self._t.requests:
            raise _duplicate(f"request_id {request_id}")
        self._t.requests[request_id] = record


class FakeUnitOfWork(FakeUnitOfWorkBase[Tables]):
    """The service's repositories over agritrace_testing's copy-on-begin unit of work."""

    accounts: FakeAccountRepository
    sessions: FakeSessionRepository
    revocations: FakeRevocationLog
    keys: FakeSigningKeys
    platforms: FakePlatformRepository
    requests: FakeRequestLog

    def _open(self, working: Tables) -> None:
        self.accounts = FakeAccountRepository(working)
        self.sessions = FakeSessionRepository(working)
        self.revocations = FakeRevocationLog(working)
        self.keys = FakeSigningKeys(working)
        self.platforms = FakePlatformRepository(working)
        self.requests = FakeRequestLog(working)
