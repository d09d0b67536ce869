"""sso server process (microservices mode). It authenticates its own callers with its own
keys and revocation list, in process."""

from __future__ import annotations

import logging

from agritrace.sso.v1 import sso_pb2_grpc
from agritrace_kernel.auth.policy import PolicyTable
from agritrace_kernel.auth.wiring import Authentication, local_authentication
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import NamekoPublisher
from agritrace_kernel.grpc_kit.server import ServiceRegistration, create_server, serve
from agritrace_kernel.metrics import serve_metrics
from agritrace_sso.bootstrap import LocalKeySet, LocalRevocations, SsoApp, bootstrap, migrate
from agritrace_sso.entrypoints.grpc_servicer import SERVICE_NAME, SsoServicer
from agritrace_sso.entrypoints.policy import POLICIES

log = logging.getLogger(__name__)


def registration(app: SsoApp) -> ServiceRegistration:
    servicer = SsoServicer(app.service)
    return ServiceRegistration(
        name=SERVICE_NAME,
        add_to_server=lambda server: sso_pb2_grpc.add_SsoServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server
        ),
        readiness=app.readiness_checks(),
    )


def authentication(app: SsoApp, policies: PolicyTable = POLICIES) -> Authentication:
    """For any server hosting sso (alone, or with every other service in the all-in-one)."""
    return local_authentication(policies, LocalKeySet(app.service), LocalRevocations(app.service))


def main(settings: Settings) -> None:
    if settings.migrate_on_start:
        migrate(settings)
    publisher = NamekoPublisher(settings.amqp_uri) if settings.event_bus == "rabbitmq" else None
    app = bootstrap(settings, publisher)
    auth = authentication(app)
    server = create_server(
        settings.grpc_address,
        [registration(app)],
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
        on_ready=lambda: log.info("sso serving on port %s", server.port),
    )
