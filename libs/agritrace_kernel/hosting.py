"""Running one service's gRPC server process (microservices mode): the same sequence for every
service — metrics endpoint, authentication, background threads, outbox relay, then serve until
SIGTERM and stop them all in reverse. A service that writes events also serves its event log
(agritrace.events.v1.EventLogService) on the same server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from agritrace_kernel.auth.policy import PolicyTable
from agritrace_kernel.auth.wiring import Authentication, remote_authentication
from agritrace_kernel.config import Settings
from agritrace_kernel.events import log_service
from agritrace_kernel.events.bus import NamekoPublisher, Publisher
from agritrace_kernel.events.relay import OutboxRelay
from agritrace_kernel.grpc_kit.server import ServiceRegistration, create_server, serve
from agritrace_kernel.metrics import serve_metrics
from agritrace_kernel.store import ServiceStore

log = logging.getLogger(__name__)


class HostedApp(Protocol):
    @property
    def relay(self) -> OutboxRelay | None: ...
    def close(self) -> None: ...


class StoredApp(HostedApp, Protocol):
    """A service with its own database, whose outbox is its event log."""

    @property
    def store(self) -> ServiceStore: ...


A = TypeVar("A", bound="StoredApp")


class Background(Protocol):
    """A thread a server runs beside its RPCs (e.g. a sweeper)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


def publisher_for(settings: Settings) -> Publisher | None:
    """RabbitMQ via nameko in microservices mode; None otherwise (events stay in the outbox
    until a relay with a publisher runs)."""
    return NamekoPublisher(settings.amqp_uri) if settings.event_bus == "rabbitmq" else None


def run_server(
    settings: Settings,
    name: str,
    registration: ServiceRegistration,
    auth: Authentication,
    app: HostedApp,
    background: Sequence[Background] = (),
    extra_registrations: Sequence[ServiceRegistration] = (),
) -> None:
    server = create_server(
        settings.grpc_address,
        [registration, *extra_registrations],
        max_workers=settings.grpc_max_workers,
        extra_interceptors=[auth.interceptor],
    )
    server.on_stop.extend([*(task.stop for task in background), auth.stop, app.close])
    serve_metrics(settings.metrics_port)
    auth.start()
    for task in background:
        task.start()
    if app.relay is not None:
        app.relay.start()
    serve(
        server,
        grace_seconds=settings.shutdown_grace_seconds,
        on_ready=lambda: log.info("%s serving on port %s", name, server.port),
    )


def serve_service(
    settings: Settings,
    name: str,
    *,
    migrate: Callable[[Settings], None],
    bootstrap: Callable[[Settings, Publisher | None], A],
    registration: Callable[[A, tuple[Callable[[], bool], ...]], ServiceRegistration],
    policies: PolicyTable,
    background: Callable[[A], Sequence[Background]] = lambda app: (),
) -> None:
    """`python -m <service> serve` in microservices mode: migrations if asked, the service's
    app, authentication against sso, then run_server until SIGTERM. The server is not ready
    before the first revocation list arrived from sso: serving then could accept a session
    revoked moments ago (afterwards an sso outage keeps reads going). The server also serves
    the service's event log, so no service wires it itself."""
    if settings.migrate_on_start:
        migrate(settings)
    app = bootstrap(settings, publisher_for(settings))
    auth = remote_authentication(settings, policies.merged(log_service.POLICIES))
    event_log = log_service.registration({app.store.service: app.store.readers},
                                         (app.store.ready,))
    run_server(settings, name, registration(app, (auth.recently_synced,)), auth, app,
               background(app), [event_log])
