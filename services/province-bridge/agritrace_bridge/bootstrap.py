"""The composition root of a province's bridge: its configuration, its own database (one
schema or SQLite file per province, so several bridges share one PostgreSQL database), its
provincial platform adapter and the national services it calls as the province's platform
client."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agritrace_bridge.adapters.loader import AdapterCatalog, config_from_environment
from agritrace_bridge.adapters.metrics import PrometheusObserver
from agritrace_bridge.adapters.national import GrpcSubjectImporter
from agritrace_bridge.adapters.repository import SqlAlchemyBridgeUnitOfWork
from agritrace_bridge.service_layer.imports import HistoricalImport
from agritrace_bridge.service_layer.national import SubjectImporter
from agritrace_bridge.service_layer.observe import SyncObserver
from agritrace_bridge.service_layer.ports import AdapterConfig, ProvincialPlatform
from agritrace_kernel import db
from agritrace_kernel.auth.wiring import service_channel
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import Publisher
from agritrace_kernel.events.relay import OutboxRelay
from agritrace_kernel.store import ServiceStore

MIGRATIONS = Path(__file__).parent / "migrations"


def service_name(province: str) -> str:
    """The bridge's name as a service: its schema (province_bridge_37) or SQLite file."""
    return f"province-bridge-{province}"


@dataclass(frozen=True)
class BridgeConfig:
    """The bridge's own settings (AGRITRACE_BRIDGE_*), next to the kernel's Settings."""

    adapter: str
    platform: AdapterConfig

    @property
    def province(self) -> str:
        return self.platform.province

    @property
    def service(self) -> str:
        return service_name(self.province)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> BridgeConfig:
        name, config = config_from_environment(os.environ if environ is None else environ)
        return cls(name, config)


@dataclass
class BridgeApp:
    settings: Settings
    config: BridgeConfig
    store: ServiceStore
    platform: ProvincialPlatform
    imports: HistoricalImport
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def relay(self) -> OutboxRelay | None:
        return self.store.relay

    def readiness_checks(self) -> tuple[Callable[[], bool], ...]:
        return (self.store.ready,)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.platform.close()
        self.store.close()


def migrate(settings: Settings, config: BridgeConfig | None = None) -> None:
    config = config or BridgeConfig.from_environment()
    db.migrate(settings.database_for(config.service), MIGRATIONS)


def bootstrap(settings: Settings, publisher: Publisher | None = None, *,
              config: BridgeConfig | None = None,
              platform: ProvincialPlatform | None = None,
              importer: SubjectImporter | None = None,
              observer: SyncObserver | None = None) -> BridgeApp:
    """Builds the bridge. Unset parts come from the configuration: the provincial platform
    through its adapter (AGRITRACE_BRIDGE_ADAPTER), the registry over gRPC at
    AGRITRACE_REGISTRY_ADDRESS as the platform client AGRITRACE_SERVICE_USERNAME."""
    config = config or BridgeConfig.from_environment()
    channels: list[grpc.Channel] = []
    if importer is None:
        registry, opened = service_channel(settings, settings.registry_address,
                                           "AGRITRACE_REGISTRY_ADDRESS")
        channels.extend(opened)
        importer = GrpcSubjectImporter(registry)
    if platform is None:
        platform = AdapterCatalog.discover().open(config.adapter, config.platform)
    if platform.province != config.province:
        raise ValueError(f"the adapter serves province {platform.province}, the bridge "
                         f"is configured for {config.province}")
    store = ServiceStore.open(settings, config.service, publisher)

    def uow_factory() -> SqlAlchemyBridgeUnitOfWork:
        return SqlAlchemyBridgeUnitOfWork(store.sessions, after_commit=store.after_commit)

    observer = observer or PrometheusObserver(config.province)
    imports = HistoricalImport(config.province, uow_factory, platform, importer,
                               observer=observer)
    return BridgeApp(settings, config, store, platform, imports, channels)
