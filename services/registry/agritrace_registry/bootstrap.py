"""The composition root of the registry: the one place that picks adapters for the mode the
process runs in and wires them into the use cases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agritrace_kernel import db
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import IdempotentHandler, Publisher, Subscription
from agritrace_kernel.events.relay import OutboxRelay
from agritrace_kernel.locks import LeaseManager, LocalLeases, RedisLeases, lease_manager
from agritrace_kernel.store import ServiceStore
from agritrace_registry.adapters.pii import AesGcmProtector
from agritrace_registry.adapters.repository import RegistryUnitOfWork
from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_registry.service_layer.importer import SubjectImporter
from agritrace_registry.service_layer.services import SERVICE, RegistryService

MIGRATIONS = Path(__file__).parent / "migrations"
DUPLICATE_CHECK = "registry.duplicate_check"


@dataclass
class RegistryApp:
    settings: Settings
    store: ServiceStore
    service: RegistryService
    importer: SubjectImporter
    leases: LeaseManager = field(default_factory=LocalLeases)
    subscriptions: list[Subscription] = field(default_factory=list)

    @property
    def relay(self) -> OutboxRelay | None:
        return self.store.relay

    def ready(self) -> bool:
        return self.store.ready()

    def readiness_checks(self) -> tuple[Callable[[], bool], ...]:
        """The database, and Redis when the leases live there."""
        checks: list[Callable[[], bool]] = [self.ready]
        if isinstance(self.leases, RedisLeases):
            checks.append(self.leases.ping)
        return tuple(checks)

    def close(self) -> None:
        self.store.close()


def migrate(settings: Settings) -> None:
    db.migrate(settings.database_for(SERVICE), MIGRATIONS)


def bootstrap(settings: Settings, publisher: Publisher | None = None) -> RegistryApp:
    """Builds the registry. With a publisher, an outbox relay publishes through it (the
    caller starts it); without one, events stay in the outbox (e.g. in a worker process)."""
    store = ServiceStore.open(settings, SERVICE, publisher)

    def uow_factory() -> RegistryUnitOfWork:
        return RegistryUnitOfWork(store.sessions, after_commit=store.after_commit)

    service = RegistryService(
        uow_factory,
        DivisionCatalog.bundled(),
        AesGcmProtector(settings.pii_key_bytes()),
        reader_factory=lambda: RegistryUnitOfWork(store.readers),
    )
    handler = IdempotentHandler(DUPLICATE_CHECK, service.flag_suspected_duplicates, uow_factory)
    subscriptions = [
        Subscription(DUPLICATE_CHECK, SERVICE, "subject_registered", handler),
        Subscription(DUPLICATE_CHECK, SERVICE, "import_batch_applied", handler),
    ]
    leases = lease_manager(settings.redis_url, prefix="agritrace:registry")
    return RegistryApp(
        settings=settings,
        leases=leases,
        store=store,
        service=service,
        importer=SubjectImporter(service, leases),
        subscriptions=subscriptions,
    )
