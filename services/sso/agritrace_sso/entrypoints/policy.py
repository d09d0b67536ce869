"""Who may call each SsoService RPC at all. Finer rules (whom an account may manage, which
platform a token may be exchanged for) are the use cases' (service_layer/services.py)."""

from __future__ import annotations

from agritrace.sso.v1 import sso_pb2
from agritrace_kernel.auth.policy import ANONYMOUS_ALLOWED, PolicyTable, authenticated
from agritrace_kernel.auth.principal import PrincipalKind as Kind

SERVICE = sso_pb2.DESCRIPTOR.services_by_name["SsoService"]
SIGNED_IN = authenticated()

POLICIES = PolicyTable.for_service(SERVICE, {
    "Login": ANONYMOUS_ALLOWED,
    "Refresh": ANONYMOUS_ALLOWED,  # the refresh token is the credential
    "GetJwks": ANONYMOUS_ALLOWED,
    "ListPlatforms": ANONYMOUS_ALLOWED,  # the public portal directory
    "Logout": SIGNED_IN,
    "RevokeSessions": SIGNED_IN,
    "ListRevocations": authenticated(Kind.SERVICE, Kind.OPS_ADMIN, Kind.PLATFORM_CLIENT),
    "Introspect": authenticated(Kind.SERVICE, Kind.OPS_ADMIN),
    "RotateSigningKey": authenticated(Kind.OPS_ADMIN),
    "ExchangeToken": SIGNED_IN,
    "CreateAccount": authenticated(Kind.OPS_ADMIN, Kind.REGULATOR),
    "GetAccount": SIGNED_IN,
    "ListAccounts": authenticated(Kind.OPS_ADMIN, Kind.REGULATOR),
    "UpdateAccount": SIGNED_IN,
    "RegisterPlatform": authenticated(Kind.OPS_ADMIN),
    "UpdatePlatform": authenticated(Kind.OPS_ADMIN),
})
POLICIES.check_complete(SERVICE)
