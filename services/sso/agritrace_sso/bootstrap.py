"""The composition root of sso: the one place that picks adapters for the mode the process
runs in and wires them into the use cases."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agritrace_kernel import db
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import IdempotentHandler, Publisher, Subscription
from agritrace_kernel.events.relay import OutboxRelay
from agritrace_kernel.store import ServiceStore
from agritrace_sso.adapters.crypto import Argon2Hasher, JoseTokenCodec, signing_key_sealer
from agritrace_sso.adapters.repository import SsoUnitOfWork
from agritrace_sso.adapters.throttle import MemoryLoginThrottle, RedisLoginThrottle
from agritrace_sso.domain.model import AccountKind, Caller
from agritrace_sso.service_layer.ports import LoginThrottle
from agritrace_sso.service_layer.services import SERVICE, SsoService

MIGRATIONS = Path(__file__).parent / "migrations"
OPERATOR_BINDING = "sso.operator_binding"


@dataclass
class SsoApp:
    settings: Settings
    store: ServiceStore
    service: SsoService
    throttle: LoginThrottle
    subscriptions: list[Subscription] = field(default_factory=list)

    @property
    def relay(self) -> OutboxRelay | None:
        return self.store.relay

    def ready(self) -> bool:
        return self.store.ready()

    def readiness_checks(self) -> tuple[Callable[[], bool], ...]:
        """The database, and Redis when the login throttle lives there."""
        checks: list[Callable[[], bool]] = [self.ready]
        if isinstance(self.throttle, RedisLoginThrottle):
            checks.append(self.throttle.ping)
        return tuple(checks)

    def close(self) -> None:
        self.store.close()


def migrate(settings: Settings) -> None:
    db.migrate(settings.database_for(SERVICE), MIGRATIONS)


def bootstrap(settings: Settings, publisher: Publisher | None = None) -> SsoApp:
    """Builds sso. With a publisher, an outbox relay publishes through it (the caller starts
    it); without one, events stay in the outbox. Needs the migrated schema: creates the first
    signing key if there is none."""
    store = ServiceStore.open(settings, SERVICE, publisher)

    def uow_factory() -> SsoUnitOfWork:
        return SsoUnitOfWork(store.sessions, after_commit=store.after_commit)

    throttle: LoginThrottle = (
        RedisLoginThrottle(settings.redis_url) if settings.redis_url else MemoryLoginThrottle()
    )
    service = SsoService(
        uow_factory,
        Argon2Hasher(),
        JoseTokenCodec(signing_key_sealer(settings.pii_key_bytes())),
        throttle,
    )
    service.ensure_signing_key()
    binding = IdempotentHandler(OPERATOR_BINDING, service.bind_registering_operator, uow_factory)
    return SsoApp(
        settings=settings,
        store=store,
        service=service,
        throttle=throttle,
        subscriptions=[Subscription(OPERATOR_BINDING, "registry", "subject_registered", binding)],
    )


class LocalKeySet:
    """The sso's own published keys, for authenticating calls in this process."""

    def __init__(self, service: SsoService) -> None:
        self._service = service

    def fetch_jwks(self) -> str:
        return self._service.jwks()


# The process itself reads revocations; it is a service, not a signed-in account.
SYSTEM_CALLER = Caller(account_id="system:sso", kind=AccountKind.SERVICE)


class LocalRevocations:
    """The sso's own revocation list, for authenticating calls in this process."""

    def __init__(self, service: SsoService) -> None:
        self._service = service

    def revocations_since(self, cursor: str) -> tuple[list[tuple[str, datetime]], str]:
        page, next_cursor = self._service.list_revocations(SYSTEM_CALLER, cursor, 1000)
        return [(r.session_id, r.revoked_at) for r in page], next_cursor


def ensure_admin(app: SsoApp, settings: Settings) -> str | None:
    """Creates the first administrator `admin` when missing. Returns the password when it
    had to generate one (to be shown once), else None."""
    generated = None
    if settings.admin_password is not None:
        password = settings.admin_password.get_secret_value()
    else:
        password = generated = secrets.token_urlsafe(18)
    created = app.service.ensure_admin(password)
    return generated if created else None


def bootstrap_admin(settings: Settings) -> int:
    """`python -m agritrace_sso bootstrap-admin`: needs AGRITRACE_ADMIN_PASSWORD."""
    if settings.admin_password is None:
        print("AGRITRACE_ADMIN_PASSWORD must be set", file=sys.stderr)
        return 2
    app = bootstrap(settings)
    try:
        ensure_admin(app, settings)
    finally:
        app.close()
    return 0
