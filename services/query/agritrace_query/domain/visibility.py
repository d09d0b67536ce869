"""Who may ask the query service what, and how much of the answer each asker sees: the one
policy module of the service (docs/query.md, "What each asker sees").

- GetOriginInfo: anyone, anonymous included; everyone gets the same origin-only view.
- TraceCode / TraceBatch: a subject operator sees its own records on goods it handled plus
  one node either side; administrators and services the ±1 view around every holder;
  regulators and platform clients are sent to TraceBack / TraceForward.
- TraceBack / TraceForward: regulators and platform clients (their province), in full inside
  their jurisdiction and as identity + division outside it; national regulators,
  administrators and services see everything.
- ListQueryLogs: regulators within their jurisdiction; auditors and administrators all.
- VerifyQueryLog: auditors and administrators.
- GetStatistics: regulators and platform clients for divisions inside their jurisdiction;
  administrators and services any.

Refusals raise the kernel's errors (PERMISSION_DENIED with a stable reason, UNAUTHENTICATED);
the use cases log them like any other answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agritrace_kernel.auth.principal import Principal, PrincipalKind, Role
from agritrace_kernel.errors import PermissionDenied, Unauthenticated


class AskerRole(StrEnum):
    """The role a query-log entry records: CONSUMER (anonymous) or the principal kind."""

    CONSUMER = "CONSUMER"
    SUBJECT_OPERATOR = "SUBJECT_OPERATOR"
    REGULATOR = "REGULATOR"
    PLATFORM_CLIENT = "PLATFORM_CLIENT"
    OPS_ADMIN = "OPS_ADMIN"
    SERVICE = "SERVICE"


@dataclass(frozen=True)
class Asker:
    """Who asks, reduced to what the policy needs. `account` is the account id, or
    "anon:<fingerprint>" for a consumer."""

    role: AskerRole
    account: str
    subject_id: str = ""
    jurisdiction: str = ""
    auditor: bool = False

    @classmethod
    def of(cls, principal: Principal | None, anonymous_fingerprint: str = "") -> Asker:
        if principal is None:
            return cls(AskerRole.CONSUMER, f"anon:{anonymous_fingerprint}")
        return cls(
            role=AskerRole(principal.kind.value),
            account=principal.account_id,
            subject_id=principal.subject_id if principal.kind is PrincipalKind.SUBJECT_OPERATOR
            else "",
            jurisdiction=principal.jurisdiction,
            auditor=principal.is_regulator and principal.has_role(Role.AUDITOR),
        )

    @property
    def anonymous(self) -> bool:
        return self.role is AskerRole.CONSUMER


class ScopeKind(StrEnum):
    ORIGIN_ONLY = "ORIGIN_ONLY"  # the consumer view
    NEIGHBOURS = "NEIGHBOURS"  # an operator's own records ±1 node
    FULL = "FULL"  # everything asked about
    JURISDICTION = "JURISDICTION"  # in full inside a division prefix, redacted outside
    NONE = "NONE"  # refused: nothing returned


@dataclass(frozen=True)
class Scope:
    """What an answer may contain. `subject_id`: the operator of a NEIGHBOURS view;
    `jurisdiction`: the prefix of a JURISDICTION view."""

    kind: ScopeKind
    subject_id: str = ""
    jurisdiction: str = ""

    @property
    def label(self) -> str:
        """As the query log records it: ORIGIN_ONLY, NEIGHBOURS, FULL, JURISDICTION:37."""
        if self.kind is ScopeKind.JURISDICTION:
            return f"JURISDICTION:{self.jurisdiction}"
        return self.kind.value

    def sees_in_full(self, division_code: str) -> bool:
        """Whether records of a subject in `division_code` are shown in full."""
        if self.kind in (ScopeKind.FULL, ScopeKind.NEIGHBOURS):
            # A neighbourhood is restricted by its nodes; what it has is shown.
            return True
        if self.kind is ScopeKind.JURISDICTION:
            return bool(division_code) and division_code.startswith(self.jurisdiction)
        return False


ORIGIN_ONLY = Scope(ScopeKind.ORIGIN_ONLY)
FULL = Scope(ScopeKind.FULL)
NONE = Scope(ScopeKind.NONE)

_EVERYWHERE = frozenset({AskerRole.OPS_ADMIN, AskerRole.SERVICE})


def _signed_in(asker: Asker, rpc: str) -> None:
    if asker.anonymous:
        raise Unauthenticated(f"{rpc} needs a signed-in caller", reason="SIGN_IN_REQUIRED")


def _denied(asker: Asker, rpc: str, reason: str, hint: str = "") -> PermissionDenied:
    who = asker.role.value.lower().replace("_", " ")
    return PermissionDenied(f"a {who} may not call {rpc}{hint}", reason=reason,
                            metadata={"role": asker.role.value})


def origin_scope(asker: Asker) -> Scope:
    """GetOriginInfo: the same origin-only view for everyone."""
    return ORIGIN_ONLY


def neighbours_scope(asker: Asker, rpc: str) -> Scope:
    """TraceCode / TraceBatch. Whether an operator handled the goods is for the use case to
    find out (NOT_FOUND otherwise, the same answer as for unknown goods)."""
    _signed_in(asker, rpc)
    if asker.role is AskerRole.SUBJECT_OPERATOR:
        return Scope(ScopeKind.NEIGHBOURS, subject_id=asker.subject_id)
    if asker.role in _EVERYWHERE:
        return FULL
    raise _denied(asker, rpc, "USE_TRACE_BACK_OR_FORWARD", "; use TraceBack or TraceForward")


def graph_scope(asker: Asker, rpc: str) -> Scope:
    """TraceBack / TraceForward."""
    _signed_in(asker, rpc)
    if asker.role in _EVERYWHERE:
        return FULL
    if asker.role is AskerRole.REGULATOR:
        return FULL if asker.jurisdiction == "" else Scope(
            ScopeKind.JURISDICTION, jurisdiction=asker.jurisdiction)
    if asker.role is AskerRole.PLATFORM_CLIENT and asker.jurisdiction:
        return Scope(ScopeKind.JURISDICTION, jurisdiction=asker.jurisdiction)
    raise _denied(asker, rpc, "REGULATORS_ONLY", "; use TraceCode or TraceBatch")


def query_log_scope(asker: Asker) -> Scope:
    """ListQueryLogs: FULL, or JURISDICTION (entries whose target division lies in it)."""
    _signed_in(asker, "ListQueryLogs")
    if asker.role is AskerRole.OPS_ADMIN or asker.auditor:
        return FULL
    if asker.role is AskerRole.REGULATOR:
        return FULL if asker.jurisdiction == "" else Scope(
            ScopeKind.JURISDICTION, jurisdiction=asker.jurisdiction)
    raise _denied(asker, "ListQueryLogs", "REGULATORS_ONLY")


def check_may_verify_log(asker: Asker) -> Scope:
    """VerifyQueryLog: auditors and administrators."""
    _signed_in(asker, "VerifyQueryLog")
    if asker.role is AskerRole.OPS_ADMIN or asker.auditor:
        return FULL
    raise _denied(asker, "VerifyQueryLog", "AUDITORS_ONLY")


def statistics_scope(asker: Asker, division_code: str) -> Scope:
    """GetStatistics for `division_code` ("" the nation)."""
    _signed_in(asker, "GetStatistics")
    if asker.role in _EVERYWHERE:
        return FULL
    if asker.role in (AskerRole.REGULATOR, AskerRole.PLATFORM_CLIENT):
        if asker.role is AskerRole.REGULATOR and asker.jurisdiction == "":
            return FULL
        if asker.jurisdiction and division_code.startswith(asker.jurisdiction):
            return Scope(ScopeKind.JURISDICTION, jurisdiction=asker.jurisdiction)
        raise PermissionDenied(
            f"division {division_code or 'nation'} lies outside the caller's jurisdiction",
            reason="OUTSIDE_JURISDICTION", metadata={"role": asker.role.value})
    raise _denied(asker, "GetStatistics", "REGULATORS_ONLY")
