"""Who may steer a bridge: national ops administrators, and the province's own platform
client (the provincial ops team signs in as it). A platform client of another province is
refused; so is every other kind of account (the RPC policy already keeps them out)."""

from __future__ import annotations

from agritrace_kernel.auth.principal import Principal, PrincipalKind
from agritrace_kernel.errors import PermissionDenied


def check_acts_for(actor: Principal | None, province: str) -> None:
    """`actor=None` is the process itself (trusted)."""
    if actor is None or actor.kind is PrincipalKind.OPS_ADMIN:
        return
    if actor.kind is PrincipalKind.PLATFORM_CLIENT and actor.jurisdiction == province:
        return
    raise PermissionDenied(
        f"this bridge serves province {province} only",
        reason="OUTSIDE_JURISDICTION",
        metadata={"kind": actor.kind.value, "jurisdiction": actor.jurisdiction})
