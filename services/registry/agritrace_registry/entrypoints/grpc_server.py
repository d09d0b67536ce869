"""Registry server process (microservices mode)."""

from __future__ import annotations

import logging

from agritrace.registry.v1 import registry_pb2_grpc
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import NamekoPublisher, Publisher
from agritrace_kernel.grpc_kit.server import GrpcServer, ServiceRegistration, create_server, serve
from agritrace_kernel.metrics import serve_metrics
from agritrace_registry.bootstrap import RegistryApp, bootstrap, migrate
from agritrace_registry.entrypoints.grpc_servicer import SERVICE_NAME, RegistryServicer

log = logging.getLogger(__name__)


def registration(app: RegistryApp) -> ServiceRegistration:
    servicer = RegistryServicer(app.service, app.importer)
    return ServiceRegistration(
        name=SERVICE_NAME,
        add_to_server=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server
        ),
        readiness=app.readiness_checks(),
    )


def build(settings: Settings, publisher: Publisher | None) -> tuple[GrpcServer, RegistryApp]:
    app = bootstrap(settings, publisher)
    server = create_server(
        settings.grpc_address, [registration(app)], max_workers=settings.grpc_max_workers
    )
    if app.relay is not None:
        server.on_stop.append(app.close)
    return server, app


def main(settings: Settings) -> None:
    if settings.migrate_on_start:
        migrate(settings)
    publisher = NamekoPublisher(settings.amqp_uri) if settings.event_bus == "rabbitmq" else None
    server, app = build(settings, publisher)
    serve_metrics(settings.metrics_port)
    if app.relay is not None:
        app.relay.start()
    serve(
        server,
        grace_seconds=settings.shutdown_grace_seconds,
        on_ready=lambda: log.info("registry serving on port %s", server.port),
    )
