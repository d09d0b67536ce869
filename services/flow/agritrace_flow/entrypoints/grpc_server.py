"""Flow server process (microservices mode): callers are authenticated against the sso
service's keys and revocations; subjects come from the registry, codes from coding."""

from __future__ import annotations

from collections.abc import Callable

from agritrace.flow.v1 import flow_pb2_grpc
from agritrace_flow.bootstrap import FlowApp, bootstrap, migrate
from agritrace_flow.entrypoints.grpc_servicer import SERVICE_NAME, FlowServicer
from agritrace_flow.entrypoints.policy import POLICIES
from agritrace_kernel.auth.wiring import remote_authentication
from agritrace_kernel.config import Settings
from agritrace_kernel.grpc_kit.server import ServiceRegistration
from agritrace_kernel.hosting import publisher_for, run_server


def registration(
    app: FlowApp, extra_readiness: tuple[Callable[[], bool], ...] = ()
) -> ServiceRegistration:
    servicer = FlowServicer(app.service, app.interchange)
    return ServiceRegistration(
        name=SERVICE_NAME,
        add_to_server=lambda server: flow_pb2_grpc.add_FlowServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server
        ),
        readiness=app.readiness_checks() + extra_readiness,
    )


def main(settings: Settings) -> None:
    if settings.migrate_on_start:
        migrate(settings)
    app = bootstrap(settings, publisher_for(settings))
    auth = remote_authentication(settings, POLICIES)
    run_server(settings, "flow", registration(app, (auth.recently_synced,)), auth, app)
