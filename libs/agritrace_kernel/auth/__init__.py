"""Authentication and authorization shared by every service.

Who is calling (`Principal`, `current_principal`), how a bearer token becomes a principal
(`tokens`), and which RPC each kind of principal may call (`policy`) are free of grpc, so use
cases and nameko workers may import them. The gRPC parts - the server interceptor and the
adapters over the sso service - live in `interceptor` and `sso_client`, which only gRPC
processes import.
"""

from agritrace_kernel.auth.principal import (
    Principal,
    PrincipalKind,
    Role,
    acting_as,
    current_principal,
)

__all__ = ["Principal", "PrincipalKind", "Role", "acting_as", "current_principal"]
