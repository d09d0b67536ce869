"""Who is calling: the principal a verified access token stands for, and the context variable
that carries it through a call."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum


class PrincipalKind(StrEnum):
    """The `kind` claim of an access token (sso AccountKind without its prefix)."""

    SUBJECT_OPERATOR = "SUBJECT_OPERATOR"
    REGULATOR = "REGULATOR"
    PLATFORM_CLIENT = "PLATFORM_CLIENT"
    OPS_ADMIN = "OPS_ADMIN"
    SERVICE = "SERVICE"


class Role(StrEnum):
    """What a regulator does (the `roles` claim)."""

    REVIEWER = "REVIEWER"
    INSPECTOR = "INSPECTOR"
    AUDITOR = "AUDITOR"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. "Nobody" is `None`, never a Principal."""

    account_id: str
    kind: PrincipalKind
    username: str
    subject_id: str  # operators: the registry subject they operate; else ""
    jurisdiction: str  # "" national, else a 2-, 4- or 6-digit division code
    roles: frozenset[str]
    session_id: str
    audience: str

    @property
    def is_regulator(self) -> bool:
        return self.kind is PrincipalKind.REGULATOR

    @property
    def is_national(self) -> bool:
        """A regulator of the whole nation (no jurisdiction)."""
        return self.is_regulator and self.jurisdiction == ""

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def covers_division(self, code: str) -> bool:
        """Whether the division `code` (2, 4 or 6 digits) lies within this principal's
        jurisdiction: a national regulator covers everything, a provincial, city or county
        regulator (or a platform client bound to a province) covers the codes starting with
        its own. Other kinds have no jurisdiction and cover nothing; use cases decide what
        operators, administrators and services may touch."""
        if self.kind not in (PrincipalKind.REGULATOR, PrincipalKind.PLATFORM_CLIENT):
            return False
        if self.jurisdiction == "":
            return self.kind is PrincipalKind.REGULATOR
        return bool(code) and code.startswith(self.jurisdiction)


_current: ContextVar[Principal | None] = ContextVar("agritrace_principal", default=None)


def current_principal() -> Principal | None:
    """The principal of the call being served, or None (anonymous, or outside a call)."""
    return _current.get()


class acting_as:  # noqa: N801 - used as a function: `with acting_as(principal):`
    """Makes `principal` current for the duration of the block (for a streamed response the
    server interceptor keeps the block open until the last message). A class, not a
    generator: it runs around every call."""

    __slots__ = ("_principal", "_token")

    def __init__(self, principal: Principal | None) -> None:
        self._principal = principal

    def __enter__(self) -> None:
        self._token = _current.set(self._principal)

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        try:
            _current.reset(self._token)
        except ValueError:
            # A streamed response abandoned by its client is closed from another context;
            # the next call on this thread sets its own principal anyway.
            _current.set(None)
