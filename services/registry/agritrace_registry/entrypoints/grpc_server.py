"""Registry server process (microservices mode): callers are authenticated against the sso
service's keys and revocations."""

from __future__ import annotations

import logging
from collections.abc import Callable

from agritrace.registry.v1 import registry_pb2_grpc
from agritrace_kernel.auth.wiring import remote_authentication
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import NamekoPublisher
from agritrace_kernel.grpc_kit.server import ServiceRegistration, create_server, serve
from agritrace_kernel.metrics import serve_metrics
from agritrace_registry.bootstrap import RegistryApp, bootstrap, migrate
from agritrace_registry.entrypoints.grpc_servicer import SERVICE_NAME, RegistryServicer
from agritrace_registry.entrypoints.policy import POLICIES

log = logging.getLogger(__name__)


def registration(
    app: RegistryApp, extra_readiness: tuple[Callable[[], bool], ...] = ()
) -> ServiceRegistration:
    """`extra_readiness`: checks of the hosting server, e.g. that revocations are known."""
    servicer = RegistryServicer(app.service, app.importer)
    return ServiceRegistration(
        name=SERVICE_NAME,
        add_to_server=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server
        ),
        readiness=app.readiness_checks() + extra_readiness,
    )


def main(settings: Settings) -> None:
    if settings.migrate_on_start:
        migrate(settings)
    publisher = NamekoPublisher(settings.amqp_uri) if settings.event_bus == "rabbitmq" else None
    app = bootstrap(settings, publisher)
    auth = remote_authentication(settings, POLICIES)
    server = create_server(
        settings.grpc_address,
        # Not ready before the first revocation list arrived from sso: serving then could
        # accept a session revoked moments ago. Afterwards an sso outage keeps reads going.
        [registration(app, (auth.recently_synced,))],
        max_workers=settings.grpc_max_workers,
        extra_interceptors=[auth.interceptor],
    )
    server.on_stop.extend([auth.stop, app.close])
    serve_metrics(settings.metrics_port)
    auth.start()
    if app.relay is not None:
        app.relay.start()
    serve(
        server,
        grace_seconds=settings.shutdown_grace_seconds,
        on_ready=lambda: log.info("registry serving on port %s", server.port),
    )
