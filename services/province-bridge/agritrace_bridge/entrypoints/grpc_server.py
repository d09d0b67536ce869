"""The bridge's server process: ProvinceBridgeService (with health, reflection, the event log
and graceful shutdown, like every service), authenticated against sso as the province's
platform client, and the background loops that move records: the historical import, the
internal trace in, the pusher of national records, and the gauges."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from agritrace.bridge.v1 import bridge_pb2_grpc
from agritrace_bridge.adapters import metrics
from agritrace_bridge.bootstrap import BridgeApp, bootstrap, migrate
from agritrace_bridge.config import load_config
from agritrace_bridge.entrypoints.background import Loop
from agritrace_bridge.entrypoints.grpc_servicer import SERVICE_NAME, ProvinceBridgeServicer
from agritrace_bridge.entrypoints.policy import POLICIES
from agritrace_bridge.service_layer.observe import Direction
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import Publisher
from agritrace_kernel.grpc_kit.server import ServiceRegistration
from agritrace_kernel.hosting import Background, serve_service

# How often the pusher looks for due records when none is due sooner (the worker queues
# them from another process), and how often the gauges are refreshed.
PUSH_POLL_SECONDS = 1.0
GAUGE_SECONDS = 5.0


def registration(app: BridgeApp,
                 extra_readiness: tuple[Callable[[], bool], ...] = ()) -> ServiceRegistration:
    servicer = ProvinceBridgeServicer(app.imports, app.status, app.outbound, app.security,
                                      app.onboarding)
    return ServiceRegistration(
        name=SERVICE_NAME,
        add_to_server=lambda server: bridge_pb2_grpc.add_ProvinceBridgeServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server),
        readiness=app.readiness_checks() + extra_readiness,
    )


def background(app: BridgeApp) -> Sequence[Background]:
    province = app.config.province

    def run_import(stop: threading.Event) -> float:
        app.imports.run_pending(stop)
        return 5.0  # or sooner: StartImport wakes the loop

    def push(stop: threading.Event) -> float:
        if app.outbound.push_due():
            return 0.0
        return app.outbound.seconds_to_next(PUSH_POLL_SECONDS)

    def gauges(stop: threading.Event) -> float:
        for direction, status in zip((Direction.INBOUND, Direction.OUTBOUND),
                                     app.status.directions(), strict=True):
            metrics.queue_depth.labels(province, direction.value).set(status.queue_depth)
            metrics.sync_lag_seconds.labels(province, direction.value).set(status.lag_seconds)
            metrics.dead_letters.labels(province, direction.value).set(status.dead_letters)
        return GAUGE_SECONDS

    return (Loop("import", run_import, wake=app.imports.wake),
            Loop("inbound-trace", lambda stop: app.inbound.step()),
            Loop("outbound-pusher", push), Loop("gauges", gauges))


def main(settings: Settings) -> int:
    config = load_config()
    if config is None:
        return 2
    # httpx logs every request at INFO: the loops poll the province every second.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def build(settings: Settings, publisher: Publisher | None) -> BridgeApp:
        return bootstrap(settings, publisher, config=config)

    serve_service(settings, config.service,
                  migrate=lambda settings: migrate(settings, config), bootstrap=build,
                  registration=registration, policies=POLICIES, background=background)
    return 0
