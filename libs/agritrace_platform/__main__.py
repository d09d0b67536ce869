"""`make run`: the all-in-one platform. Every service built so far, one gRPC address
(127.0.0.1:50051 by default), SQLite files under var/, in-process events, migrations applied
on start-up, data kept across restarts."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from agritrace_kernel.config import ConfigError, Settings, load_settings
from agritrace_kernel.events import log_service
from agritrace_kernel.events.bus import InProcessBus
from agritrace_kernel.grpc_kit.server import GrpcServer, create_server, serve
from agritrace_kernel.logs import configure_logging
from agritrace_kernel.metrics import serve_metrics
from agritrace_kernel.telemetry import configure_tracing
from agritrace_platform.backup import BackupError, data_directory_lock

log = logging.getLogger("agritrace.platform")


@dataclass
class Platform:
    server: GrpcServer
    # The first administrator's password when it had to be generated (shown once).
    generated_admin_password: str | None


def build_platform(settings: Settings) -> Platform:
    """Migrates and wires every service onto one server, one in-process bus and one
    authentication (sso's own keys and revocations, every service's policy table)."""
    from agritrace_coding import bootstrap as coding_bootstrap
    from agritrace_coding.entrypoints import grpc_server as coding_server
    from agritrace_coding.entrypoints.policy import POLICIES as CODING_POLICIES
    from agritrace_flow import bootstrap as flow_bootstrap
    from agritrace_flow.adapters.coding_client import InProcessCodeService
    from agritrace_flow.entrypoints import grpc_server as flow_server
    from agritrace_flow.entrypoints.policy import POLICIES as FLOW_POLICIES
    from agritrace_kernel.registry_client import InProcessSubjectDirectory
    from agritrace_query import bootstrap as query_bootstrap
    from agritrace_query.entrypoints import grpc_server as query_server
    from agritrace_query.entrypoints.policy import POLICIES as QUERY_POLICIES
    from agritrace_registry import bootstrap as registry_bootstrap
    from agritrace_registry.entrypoints import grpc_server as registry_server
    from agritrace_registry.entrypoints.policy import POLICIES as REGISTRY_POLICIES
    from agritrace_sso import bootstrap as sso_bootstrap
    from agritrace_sso.entrypoints import grpc_server as sso_server
    from agritrace_sso.entrypoints.policy import POLICIES as SSO_POLICIES

    bus = InProcessBus()
    sso_bootstrap.migrate(settings)
    registry_bootstrap.migrate(settings)
    coding_bootstrap.migrate(settings)
    flow_bootstrap.migrate(settings)
    query_bootstrap.migrate(settings)
    sso = sso_bootstrap.bootstrap(settings, publisher=bus)
    registry = registry_bootstrap.bootstrap(settings, publisher=bus)
    subjects = InProcessSubjectDirectory(registry.service.get_subject)
    coding = coding_bootstrap.bootstrap(settings, publisher=bus, subjects=subjects)
    flow = flow_bootstrap.bootstrap(settings, publisher=bus, subjects=subjects,
                                    coding=InProcessCodeService(coding.service))
    query = query_bootstrap.bootstrap(settings, publisher=bus)
    generated = sso_bootstrap.ensure_admin(sso, settings)
    apps: list[sso_bootstrap.SsoApp | registry_bootstrap.RegistryApp
               | coding_bootstrap.CodingApp | flow_bootstrap.FlowApp | query_bootstrap.QueryApp]
    apps = [sso, registry, coding, flow, query]
    for subscriber in (sso, registry, query):
        for subscription in subscriber.subscriptions:
            bus.subscribe(subscription)
    auth = sso_server.authentication(
        sso, SSO_POLICIES.merged(REGISTRY_POLICIES, CODING_POLICIES, FLOW_POLICIES,
                                 QUERY_POLICIES, log_service.POLICIES))
    # One event-log servicer for every service that writes events (a gRPC service name can be
    # added to a server only once).
    sources = [registry.store, coding.store, flow.store]
    event_log = log_service.registration({store.service: store.readers for store in sources},
                                         [store.ready for store in sources])
    sweeper = coding_server.LineSweeper(coding)
    server = create_server(
        settings.grpc_address,
        [sso_server.registration(sso), registry_server.registration(registry),
         coding_server.registration(coding), flow_server.registration(flow),
         query_server.registration(query), event_log],
        max_workers=settings.grpc_max_workers,
        extra_interceptors=[auth.interceptor],
    )
    auth.start()
    sweeper.start()
    query.start()  # the query log's writer (and near cache listener); query.close stops them
    server.on_stop.extend([auth.stop, sweeper.stop])
    for app in apps:
        if app.relay is not None:
            app.relay.start()
        server.on_stop.append(app.close)
    return Platform(server, generated)


def platform_settings() -> Settings | None:
    """The all-in-one platform's settings, or None after saying on stderr what is wrong."""
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None
    if settings.event_bus != "inprocess":
        print("the all-in-one platform delivers events in-process; unset AGRITRACE_EVENT_BUS",
              file=sys.stderr)
        return None
    return settings


def main() -> int:
    settings = platform_settings()
    if settings is None:
        return 2
    if not settings.embedded:
        return run(settings)
    try:
        with data_directory_lock(settings.data_dir):
            return run(settings)
    except BackupError as error:  # the directory is another platform's
        print(error, file=sys.stderr)
        return 2


def run(settings: Settings) -> int:
    configure_logging(settings.effective_log_format, settings.log_level)
    configure_tracing("platform")
    platform = build_platform(settings)
    server = platform.server
    serve_metrics(settings.metrics_port)
    host = settings.grpc_address.rpartition(":")[0]

    def announce() -> None:
        metrics = (f"http://127.0.0.1:{settings.metrics_port}/metrics"
                   if settings.metrics_port else "disabled")
        print(
            "AgriTrace all-in-one is running\n"
            f"  gRPC      {host}:{server.port}  (agritrace.sso.v1.SsoService, "
            "agritrace.registry.v1.RegistryService,\n"
            "            agritrace.coding.v1.CodingService, agritrace.flow.v1.FlowService,\n"
            "            agritrace.query.v1.QueryService,\n"
            "            agritrace.events.v1.EventLogService (registry, coding, flow),\n"
            "            grpc.health.v1.Health, reflection)\n"
            f"  metrics   {metrics}\n"
            f"  data      {settings.data_dir.resolve()}\n"
            "  try       .venv/bin/agritrace login && .venv/bin/agritrace subjects list\n"
            + (f"  admin     user admin, password {platform.generated_admin_password} "
               "(generated now, shown once; set AGRITRACE_ADMIN_PASSWORD to choose it)\n"
               if platform.generated_admin_password else "")
            + "Press Ctrl+C to stop.",
            flush=True,
        )

    serve(server, grace_seconds=settings.shutdown_grace_seconds, on_ready=announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
