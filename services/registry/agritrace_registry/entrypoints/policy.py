"""Who may call each RegistryService RPC at all. Which subjects a caller may touch is decided
by the use cases (service_layer/access.py)."""

from __future__ import annotations

from agritrace.registry.v1 import registry_pb2
from agritrace_kernel.auth.policy import PolicyTable, any_of, authenticated, regulator_with_role
from agritrace_kernel.auth.principal import PrincipalKind as Kind
from agritrace_kernel.auth.principal import Role

SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]

POLICIES = PolicyTable.for_service(SERVICE, {
    "RegisterSubject": authenticated(
        Kind.OPS_ADMIN, Kind.REGULATOR, Kind.PLATFORM_CLIENT, Kind.SUBJECT_OPERATOR
    ),
    "GetSubject": authenticated(),
    "LookupSubject": authenticated(),
    "ListSubjects": authenticated(
        Kind.OPS_ADMIN, Kind.SERVICE, Kind.REGULATOR, Kind.PLATFORM_CLIENT
    ),
    "UpdateSubject": authenticated(Kind.OPS_ADMIN, Kind.REGULATOR, Kind.SUBJECT_OPERATOR),
    "ReviewSubject": any_of(authenticated(Kind.OPS_ADMIN), regulator_with_role(Role.REVIEWER)),
    "ImportSubjects": authenticated(Kind.OPS_ADMIN, Kind.PLATFORM_CLIENT),
})
POLICIES.check_complete(SERVICE)
