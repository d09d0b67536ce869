"""Who may call each CodingService RPC at all. Which subject's codes a caller may touch is
decided by the use cases (service_layer/access.py)."""

from __future__ import annotations

from agritrace.coding.v1 import coding_pb2
from agritrace_kernel.auth.policy import ANONYMOUS_ALLOWED, PolicyTable, authenticated
from agritrace_kernel.auth.principal import PrincipalKind as Kind

SERVICE = coding_pb2.DESCRIPTOR.services_by_name["CodingService"]

# Those who put codes on goods: operators (their subject, or as a printing company), the
# provincial platforms, administrators, and services such as flow (derivations).
_HANDLERS = authenticated(Kind.SUBJECT_OPERATOR, Kind.PLATFORM_CLIENT, Kind.OPS_ADMIN,
                          Kind.SERVICE)

POLICIES = PolicyTable.for_service(SERVICE, {
    "IssueCodes": _HANDLERS,
    "GetIssuance": authenticated(),
    "ListIssuances": authenticated(),
    "ListCodes": authenticated(),
    "ExportCodes": _HANDLERS,
    "MarkCodesPrinted": _HANDLERS,
    "ActivateCodes": _HANDLERS,
    "StreamCodes": authenticated(Kind.SUBJECT_OPERATOR, Kind.PLATFORM_CLIENT, Kind.OPS_ADMIN),
    # Every scan asks it, mostly from consumers' phones without an account.
    "VerifyCode": ANONYMOUS_ALLOWED,
    "VoidCodes": _HANDLERS,
    "DeriveCodes": _HANDLERS,
    "GetLineage": authenticated(),
    "RenderLabel": _HANDLERS,
    "RenderLabelSheet": _HANDLERS,
})
POLICIES.check_complete(SERVICE)
