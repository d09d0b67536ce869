"""The composition root of the flow service: picks adapters for the mode the process runs in
and wires them into the use cases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agritrace_flow.adapters.coding_client import GrpcCodeService
from agritrace_flow.adapters.epcis import EpcisCodecAdapter
from agritrace_flow.adapters.repository import FlowUnitOfWork
from agritrace_flow.domain.products import ProductCatalog
from agritrace_flow.service_layer.interchange import Interchange
from agritrace_flow.service_layer.ports import CodeService
from agritrace_flow.service_layer.services import SERVICE, FlowService
from agritrace_kernel import db
from agritrace_kernel.auth.wiring import service_channel
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import Publisher
from agritrace_kernel.events.relay import OutboxRelay
from agritrace_kernel.registry_client import SubjectDirectory, registry_directory
from agritrace_kernel.store import ServiceStore

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class FlowApp:
    settings: Settings
    store: ServiceStore
    service: FlowService
    interchange: Interchange
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def relay(self) -> OutboxRelay | None:
        return self.store.relay

    def readiness_checks(self) -> tuple[Callable[[], bool], ...]:
        return (self.store.ready,)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.store.close()


def migrate(settings: Settings) -> None:
    db.migrate(settings.database_for(SERVICE), MIGRATIONS)


def coding_client(settings: Settings) -> tuple[GrpcCodeService, list[grpc.Channel]]:
    """The coding service over gRPC, called as this process's service account."""
    channel, opened = service_channel(settings, settings.coding_address,
                                      "AGRITRACE_CODING_ADDRESS")
    return GrpcCodeService(channel), opened


def bootstrap(
    settings: Settings,
    publisher: Publisher | None = None,
    subjects: SubjectDirectory | None = None,
    coding: CodeService | None = None,
) -> FlowApp:
    """Builds the flow service. `subjects` and `coding`: the other services (default: over
    gRPC at AGRITRACE_REGISTRY_ADDRESS and AGRITRACE_CODING_ADDRESS)."""
    channels: list[grpc.Channel] = []
    if subjects is None:
        subjects, opened = registry_directory(settings)
        channels.extend(opened)
    if coding is None:
        coding, opened = coding_client(settings)
        channels.extend(opened)
    store = ServiceStore.open(settings, SERVICE, publisher)

    def uow_factory() -> FlowUnitOfWork:
        return FlowUnitOfWork(store.sessions, after_commit=store.after_commit)

    service = FlowService(
        uow_factory, subjects, coding, ProductCatalog.bundled(),
        reader_factory=lambda: FlowUnitOfWork(store.readers),
    )
    interchange = Interchange(service, EpcisCodecAdapter(settings.resolver_base_url))
    return FlowApp(settings, store, service, interchange, channels)
