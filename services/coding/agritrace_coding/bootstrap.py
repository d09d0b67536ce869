"""The composition root of the coding service: picks adapters for the mode the process runs
in and wires them into the use cases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from sqlalchemy.engine import Engine

from agritrace_coding.adapters import labels
from agritrace_coding.adapters.repository import CodingUnitOfWork, SqlAlchemyCodeReader
from agritrace_coding.service_layer.services import SERVICE, CodingService
from agritrace_kernel import db
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import Publisher
from agritrace_kernel.events.relay import OutboxRelay
from agritrace_kernel.registry_client import SubjectDirectory, registry_directory
from agritrace_kernel.store import ServiceStore

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class CodingApp:
    settings: Settings
    store: ServiceStore
    service: CodingService
    scan_engine: Engine
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def relay(self) -> OutboxRelay | None:
        return self.store.relay

    def readiness_checks(self) -> tuple[Callable[[], bool], ...]:
        return (self.store.ready,)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.scan_engine.dispose()
        self.store.close()


def migrate(settings: Settings) -> None:
    db.migrate(settings.database_for(SERVICE), MIGRATIONS)


def bootstrap(
    settings: Settings,
    publisher: Publisher | None = None,
    subjects: SubjectDirectory | None = None,
) -> CodingApp:
    """Builds the coding service. `subjects`: how to learn about subjects (default: the
    registry at AGRITRACE_REGISTRY_ADDRESS)."""
    channels: list[grpc.Channel] = []
    if subjects is None:
        subjects, channels = registry_directory(settings)
    store = ServiceStore.open(settings, SERVICE, publisher)
    # Scans (VerifyCode) use their own pool without pre-ping: one round trip per scan.
    scan_engine = db.create_engine(settings.database_for(SERVICE),
                                   pool_size=settings.grpc_max_workers + 4, pre_ping=False,
                                   autocommit=True)

    def uow_factory() -> CodingUnitOfWork:
        return CodingUnitOfWork(store.sessions, after_commit=store.after_commit)

    service = CodingService(
        uow_factory,
        subjects,
        SqlAlchemyCodeReader(store.readers, scan_engine),
        labels,
        resolver_base_url=settings.resolver_base_url,
        reader_factory=lambda: CodingUnitOfWork(store.readers),
    )
    return CodingApp(settings, store, service, scan_engine, channels)
