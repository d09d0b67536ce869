"""sso server process (microservices mode). It authenticates its own callers with its own
keys and revocation list, in process."""

from __future__ import annotations

from agritrace.sso.v1 import sso_pb2_grpc
from agritrace_kernel.auth.policy import PolicyTable
from agritrace_kernel.auth.wiring import Authentication, local_authentication
from agritrace_kernel.config import Settings
from agritrace_kernel.grpc_kit.server import ServiceRegistration
from agritrace_kernel.hosting import publisher_for, run_server
from agritrace_sso.bootstrap import LocalKeySet, LocalRevocations, SsoApp, bootstrap, migrate
from agritrace_sso.entrypoints.grpc_servicer import SERVICE_NAME, SsoServicer
from agritrace_sso.entrypoints.policy import POLICIES


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
    app = bootstrap(settings, publisher_for(settings))
    auth = authentication(app)
    run_server(settings, "sso", registration(app), auth, app)
