"""What the bridge needs from its province: the provincial platform port, and the errors an
adapter of it raises.

Adapters do not retry: they answer or raise once, and say whether trying again may help
(`PlatformError.retryable`). Retries, backoff with jitter and dead letters are the sync
engine's, which sees every adapter the same way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agritrace_bridge.contract import (
    Health,
    NationalRecord,
    Problem,
    PushResult,
    SubjectPage,
    TokenVerification,
    TraceRecordPage,
)


class PlatformError(Exception):
    """A call to the provincial platform failed. `reason` is a stable UPPER_SNAKE id (the
    platform's problem reason when it sent one); `status` the HTTP status, 0 without one."""

    retryable: bool = False

    def __init__(self, message: str, *, reason: str, status: int = 0,
                 problem: Problem | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status
        self.problem = problem
        # Seconds the platform asked to wait (Retry-After), if it said.
        self.retry_after = retry_after


class PlatformUnavailable(PlatformError):
    """Cannot be reached, timed out, overloaded or failed on its side (5xx, 429, 408): the
    same call may succeed later."""

    retryable = True


class PlatformRejected(PlatformError):
    """The platform refused the call (4xx other than 408 and 429): sending it again unchanged
    will be refused again."""


class ContractViolation(PlatformError):
    """The platform answered something the contract does not allow (not JSON, wrong shape, a
    page token that does not move on). A platform defect: retrying does not fix it."""


class NotSupported(PlatformError):
    """The adapter cannot do this at all (e.g. a drop folder cannot verify tokens)."""


@runtime_checkable
class ProvincialPlatform(Protocol):
    """A provincial platform as the bridge sees it, whatever the transport."""

    @property
    def province(self) -> str:
        """The two-digit province the platform serves."""
        ...

    def health(self) -> Health:
        """Whether the platform is up."""
        ...

    def list_subjects(self, page_token: str = "", page_size: int = 0) -> SubjectPage:
        """One page of the province's subjects in a stable order; "" starts at the first."""
        ...

    def list_trace_records(self, cursor: str = "", limit: int = 0) -> TraceRecordPage:
        """Internal-trace records changed after `cursor` ("" = from the beginning). Passing a
        cursor acknowledges every record before it."""
        ...

    def push_national_record(self, record: NationalRecord) -> PushResult:
        """Hands over one national record; idempotent by its record id."""
        ...

    def verify_token(self, token: str) -> TokenVerification:
        """Whether the platform accepts a token exchanged for it by sso."""
        ...

    def close(self) -> None:
        """Releases connections and files."""
        ...


@dataclass(frozen=True)
class AdapterConfig:
    """What an adapter is built from: the bridge's province and the adapter's own options
    (e.g. base_url and api_key for REST, root for a drop folder), as configured."""

    province: str
    options: Mapping[str, str] = field(default_factory=dict)

    def require(self, name: str) -> str:
        value = self.options.get(name, "").strip()
        if not value:
            raise ValueError(f"the provincial platform adapter needs the option {name!r}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.options.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"the adapter option {name!r} must be a number") from None
        if value <= 0:
            raise ValueError(f"the adapter option {name!r} must be positive")
        return value


class AdapterFactory(Protocol):
    """What an entry point of the group `agritrace.bridge.adapters` names."""

    def __call__(self, config: AdapterConfig) -> ProvincialPlatform: ...
