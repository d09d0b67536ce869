"""Domain errors, free of any framework. The gRPC kit maps each to a canonical status code
with `google.rpc.Status` details; domains raise them and never think about transport."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (e.g. "registration.credit_code") and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error a use case may raise on purpose.

    `reason` is a stable UPPER_SNAKE identifier clients can branch on (google.rpc.ErrorInfo);
    `metadata` adds non-personal context to it.
    """

    reason: str = "DOMAIN_ERROR"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; nothing was written. Carries every field violation found."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: list[FieldViolation] | FieldViolation,
        *,
        reason: str | None = None,
    ) -> None:
        self.violations = [violations] if isinstance(violations, FieldViolation) else violations
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid argument: {summary}", reason=reason)

    @classmethod
    def of(cls, field_path: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(field_path, description))


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The system is not in a state where this is allowed (e.g. an illegal state move)."""

    reason = "FAILED_PRECONDITION"


class ConcurrencyConflict(DomainError):
    """Optimistic concurrency: the client's version is stale. Maps to ABORTED (retry after
    re-reading)."""

    reason = "STALE_VERSION"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class Unavailable(DomainError):
    """Something the use case depends on (another service) cannot be reached; retry later.
    Nothing was written."""

    reason = "DEPENDENCY_UNAVAILABLE"


@dataclass
class ViolationCollector:
    """Collects field violations so a request reports all its problems at once."""

    prefix: str = ""
    violations: list[FieldViolation] = field(default_factory=list)

    def add(self, field_name: str, description: str) -> None:
        path = f"{self.prefix}.{field_name}" if self.prefix else field_name
        self.violations.append(FieldViolation(path, description))

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(list(self.violations))
