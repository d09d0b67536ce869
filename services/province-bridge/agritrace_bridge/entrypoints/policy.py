"""Who may call each ProvinceBridgeService RPC at all: national ops administrators and
platform clients. That a platform client is the bridge's own province's is checked by the
use cases (service_layer/access.py)."""

from __future__ import annotations

from agritrace.bridge.v1 import bridge_pb2
from agritrace_kernel.auth.policy import PolicyTable, authenticated
from agritrace_kernel.auth.principal import PrincipalKind as Kind

SERVICE = bridge_pb2.DESCRIPTOR.services_by_name["ProvinceBridgeService"]
_OPERATORS = authenticated(Kind.OPS_ADMIN, Kind.PLATFORM_CLIENT)

POLICIES = PolicyTable.for_service(SERVICE, {
    "GetStatus": _OPERATORS,
    "StartImport": _OPERATORS,
    "GetImportReport": _OPERATORS,
    "ReplayDeadLetters": _OPERATORS,
    "ReportSecurityEvent": _OPERATORS,
    "RunConformance": _OPERATORS,
})
POLICIES.check_complete(SERVICE)
