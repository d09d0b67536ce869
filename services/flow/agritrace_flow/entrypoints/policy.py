"""Who may call each FlowService RPC at all. Which subject or batch a caller may touch is
decided by the use cases (service_layer/access.py)."""

from __future__ import annotations

from agritrace.flow.v1 import flow_pb2
from agritrace_kernel.auth.policy import PolicyTable, authenticated
from agritrace_kernel.auth.principal import PrincipalKind as Kind

SERVICE = flow_pb2.DESCRIPTOR.services_by_name["FlowService"]

# Those who record the chain: operators for their subject, provincial platforms for their
# province (bridges), administrators, services.
_RECORDERS = authenticated(Kind.SUBJECT_OPERATOR, Kind.PLATFORM_CLIENT, Kind.OPS_ADMIN,
                           Kind.SERVICE)
# Reading a whole chain: the owner, regulators, services (the query service answers others).
_READERS = authenticated(Kind.SUBJECT_OPERATOR, Kind.REGULATOR, Kind.PLATFORM_CLIENT,
                         Kind.OPS_ADMIN, Kind.SERVICE)

POLICIES = PolicyTable.for_service(SERVICE, {
    "CreateBatch": _RECORDERS,
    "RecordShipment": _RECORDERS,
    "ConfirmReceipt": _RECORDERS,
    "RecordMarketEntry": _RECORDERS,
    "RecordTransformation": _RECORDERS,
    # Production-process records come from the provincial platforms (and administrators).
    "RecordInternalTrace": authenticated(Kind.PLATFORM_CLIENT, Kind.OPS_ADMIN, Kind.SERVICE),
    "CaptureRecords": authenticated(Kind.PLATFORM_CLIENT, Kind.OPS_ADMIN, Kind.SERVICE),
    "GetBatch": _READERS,
    "ListBatchHistory": _READERS,
    "ExportEpcis": _READERS,
    "ImportEpcis": _RECORDERS,
    "ExportRecords": authenticated(Kind.REGULATOR, Kind.OPS_ADMIN, Kind.SERVICE,
                                   Kind.SUBJECT_OPERATOR, Kind.PLATFORM_CLIENT),
})
POLICIES.check_complete(SERVICE)
