"""Who may call each QueryService RPC at all. The consumer scan is open to anyone; every
other RPC needs a signed-in caller of any kind, so that a call the caller's role may not make
still reaches the use case, which refuses it (domain/visibility.py, the one policy) and
records the refusal in the query log."""

from __future__ import annotations

from agritrace.query.v1 import query_pb2
from agritrace_kernel.auth.policy import ANONYMOUS_ALLOWED, PolicyTable, authenticated

SERVICE = query_pb2.DESCRIPTOR.services_by_name["QueryService"]

_SIGNED_IN = authenticated()

POLICIES = PolicyTable.for_service(SERVICE, {
    "GetOriginInfo": ANONYMOUS_ALLOWED,
    "TraceCode": _SIGNED_IN,
    "TraceBatch": _SIGNED_IN,
    "TraceBack": _SIGNED_IN,
    "TraceForward": _SIGNED_IN,
    "ListQueryLogs": _SIGNED_IN,
    "VerifyQueryLog": _SIGNED_IN,
    "GetStatistics": _SIGNED_IN,
})
POLICIES.check_complete(SERVICE)
