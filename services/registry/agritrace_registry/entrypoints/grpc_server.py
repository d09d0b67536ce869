"""Registry server process (microservices mode): callers are authenticated against the sso
service's keys and revocations."""

from __future__ import annotations

from collections.abc import Callable

from agritrace.registry.v1 import registry_pb2_grpc
from agritrace_kernel.config import Settings
from agritrace_kernel.grpc_kit.server import ServiceRegistration
from agritrace_kernel.hosting import serve_service
from agritrace_registry.bootstrap import RegistryApp, bootstrap, migrate
from agritrace_registry.entrypoints.grpc_servicer import SERVICE_NAME, RegistryServicer
from agritrace_registry.entrypoints.policy import POLICIES


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
    serve_service(settings, "registry", migrate=migrate, bootstrap=bootstrap,
                  registration=registration, policies=POLICIES)
