"""Flow server process (microservices mode): callers are authenticated against the sso
service's keys and revocations; subjects come from the registry, codes from coding."""

from __future__ import annotations

from collections.abc import Callable

from agritrace.flow.v1 import flow_pb2_grpc
from agritrace_flow.bootstrap import FlowApp, bootstrap, migrate
from agritrace_flow.entrypoints.grpc_servicer import SERVICE_NAME, FlowServicer
from agritrace_flow.entrypoints.policy import POLICIES
from agritrace_kernel.config import Settings
from agritrace_kernel.grpc_kit.server import ServiceRegistration
from agritrace_kernel.hosting import serve_service


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
    serve_service(settings, "flow", migrate=migrate, bootstrap=bootstrap,
                  registration=registration, policies=POLICIES)
