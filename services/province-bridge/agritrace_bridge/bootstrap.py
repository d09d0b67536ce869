"""The composition root of a province's bridge: its configuration, its own database (one
schema or SQLite file per province, so several bridges share one PostgreSQL database), its
provincial platform adapter and the national services it calls as the province's platform
client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agritrace_bridge.adapters.loader import AdapterCatalog
from agritrace_bridge.adapters.metrics import PrometheusObserver
from agritrace_bridge.adapters.national import GrpcSubjectImporter, GrpcTraceCapture
from agritrace_bridge.adapters.repository import SqlAlchemyBridgeUnitOfWork
from agritrace_bridge.adapters.sso_directory import GrpcPlatformDirectory
from agritrace_bridge.config import BridgeConfig, load_config
from agritrace_bridge.service_layer.imports import HistoricalImport
from agritrace_bridge.service_layer.inbound import InboundTrace
from agritrace_bridge.service_layer.national import SubjectImporter, TraceCapture
from agritrace_bridge.service_layer.observe import SyncObserver
from agritrace_bridge.service_layer.onboarding import Onboarding, PlatformDirectory
from agritrace_bridge.service_layer.outbound import OutboundQueue
from agritrace_bridge.service_layer.ports import ProvincialPlatform
from agritrace_bridge.service_layer.security import SecurityReports
from agritrace_bridge.service_layer.status import StatusQuery
from agritrace_kernel import db
from agritrace_kernel.auth.wiring import service_channel
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import Publisher
from agritrace_kernel.events.relay import OutboxRelay
from agritrace_kernel.store import ServiceStore

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class BridgeApp:
    settings: Settings
    config: BridgeConfig
    store: ServiceStore
    platform: ProvincialPlatform
    imports: HistoricalImport
    inbound: InboundTrace
    outbound: OutboundQueue
    security: SecurityReports
    onboarding: Onboarding
    status: StatusQuery
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


def migrate_command(settings: Settings) -> int:
    """`python -m agritrace_bridge migrate`."""
    config = load_config()
    if config is None:
        return 2
    migrate(settings, config)
    return 0


def bootstrap(settings: Settings, publisher: Publisher | None = None, *,
              config: BridgeConfig | None = None,
              platform: ProvincialPlatform | None = None,
              importer: SubjectImporter | None = None,
              flow: TraceCapture | None = None,
              directory: PlatformDirectory | None = None,
              observer: SyncObserver | None = None) -> BridgeApp:
    """Builds the bridge. Unset parts come from the configuration: the provincial platform
    through its adapter (AGRITRACE_BRIDGE_ADAPTER), the registry over gRPC at
    AGRITRACE_REGISTRY_ADDRESS and flow at AGRITRACE_FLOW_ADDRESS as the platform client
    AGRITRACE_SERVICE_USERNAME, sso's platform directory at AGRITRACE_SSO_ADDRESS."""
    config = config or BridgeConfig.from_environment()
    channels: list[grpc.Channel] = []
    if directory is None:
        if not settings.sso_address:
            raise ValueError("AGRITRACE_SSO_ADDRESS is required: the bridge signs in to sso")
        sso = grpc.insecure_channel(settings.sso_address)
        channels.append(sso)
        directory = GrpcPlatformDirectory(sso)
    if importer is None:
        registry, opened = service_channel(settings, settings.registry_address,
                                           "AGRITRACE_REGISTRY_ADDRESS")
        channels.extend(opened)
        importer = GrpcSubjectImporter(registry)
    if flow is None:
        flow_channel, opened = service_channel(settings, settings.flow_address,
                                               "AGRITRACE_FLOW_ADDRESS")
        channels.extend(opened)
        flow = GrpcTraceCapture(flow_channel)
    if platform is None:
        platform = AdapterCatalog.discover().open(config.adapter, config.platform)
    if platform.province != config.province:
        raise ValueError(f"the adapter serves province {platform.province}, the bridge "
                         f"is configured for {config.province}")
    store = ServiceStore.open(settings, config.service, publisher)

    def uow_factory() -> SqlAlchemyBridgeUnitOfWork:
        return SqlAlchemyBridgeUnitOfWork(store.sessions, after_commit=store.after_commit)

    observer = observer or PrometheusObserver(config.province)
    province = config.province
    imports = HistoricalImport(province, uow_factory, platform, importer,
                               page_size=config.import_page_size, observer=observer)
    inbound = InboundTrace(province, uow_factory, platform, flow, observer=observer)
    outbound = OutboundQueue(province, uow_factory, platform, observer=observer)
    onboarding = Onboarding(province, platform, directory)
    return BridgeApp(
        settings, config, store, platform, imports, inbound, outbound,
        SecurityReports(province, uow_factory), onboarding,
        StatusQuery(province, config.adapter, uow_factory, onboarding), channels)
