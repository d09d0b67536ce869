"""`make run`: the all-in-one platform. Every service built so far, one gRPC address
(127.0.0.1:50051 by default), SQLite files under var/, in-process events, migrations applied
on start-up, data kept across restarts."""

from __future__ import annotations

import logging
import sys

from agritrace_kernel.config import ConfigError, Settings, load_settings
from agritrace_kernel.events.bus import InProcessBus
from agritrace_kernel.grpc_kit.server import GrpcServer, create_server, serve
from agritrace_kernel.logs import configure_logging
from agritrace_kernel.metrics import serve_metrics
from agritrace_kernel.telemetry import configure_tracing

log = logging.getLogger("agritrace.platform")


def build_platform(settings: Settings) -> GrpcServer:
    """Migrates and wires every service onto one server and one in-process bus."""
    from agritrace_registry import bootstrap as registry_bootstrap
    from agritrace_registry.entrypoints.grpc_server import registration as registry_registration

    bus = InProcessBus()
    registry_bootstrap.migrate(settings)
    registry = registry_bootstrap.bootstrap(settings, publisher=bus)
    apps = [registry]
    for app in apps:
        for subscription in app.subscriptions:
            bus.subscribe(subscription)
    server = create_server(
        settings.grpc_address,
        [registry_registration(registry)],
        max_workers=settings.grpc_max_workers,
    )
    for app in apps:
        if app.relay is not None:
            app.relay.start()
        server.on_stop.append(app.close)
    return server


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if settings.event_bus != "inprocess":
        print("the all-in-one platform delivers events in-process; unset AGRITRACE_EVENT_BUS",
              file=sys.stderr)
        return 2
    configure_logging(settings.effective_log_format, settings.log_level)
    configure_tracing("platform")
    server = build_platform(settings)
    serve_metrics(settings.metrics_port)
    host = settings.grpc_address.rpartition(":")[0]

    def announce() -> None:
        metrics = (f"http://127.0.0.1:{settings.metrics_port}/metrics"
                   if settings.metrics_port else "disabled")
        print(
            "AgriTrace all-in-one is running\n"
            f"  gRPC      {host}:{server.port}  (agritrace.registry.v1.RegistryService, "
            "grpc.health.v1.Health, server reflection)\n"
            f"  metrics   {metrics}\n"
            f"  data      {settings.data_dir.resolve()}\n"
            "  try       .venv/bin/agritrace subjects list\n"
            "Press Ctrl+C to stop.",
            flush=True,
        )

    serve(server, grace_seconds=settings.shutdown_grace_seconds, on_ready=announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
