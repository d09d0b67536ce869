"""Where a service learns about registry subjects: the registry over gRPC as the service's own
account (microservices), or the registry's use cases in the same process (all-in-one).
Answers are cached briefly: a subject's division rarely changes, and a suspension reaching
another service a few seconds late is acceptable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from agritrace.registry.v1 import registry_pb2, registry_pb2_grpc
from agritrace_kernel.config import Settings
from agritrace_kernel.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable


@dataclass(frozen=True)
class SubjectInfo:
    """What other services need to know about a registry subject."""

    subject_id: str
    division_code: str
    status: str  # registry SubjectStatus name

    @property
    def province(self) -> str:
        return self.division_code[:2]


class SubjectDirectory(Protocol):
    def get(self, subject_id: str) -> SubjectInfo | None:
        """The subject, or None when the registry has no such subject. Raises
        agritrace_kernel.errors.Unavailable when the registry cannot be asked."""
        ...


CACHE_SECONDS = 30.0
# "No such subject" is remembered briefly: a subject registered a moment later gets codes soon.
NOT_FOUND_SECONDS = 3.0


class _TtlCache:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._entries: dict[str, tuple[float, SubjectInfo | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, SubjectInfo | None]:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] < self.clock():
            return False, None
        return True, entry[1]

    def put(self, key: str, value: SubjectInfo | None) -> None:
        seconds = self.seconds if value is not None else min(self.seconds, NOT_FOUND_SECONDS)
        with self._lock:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[key] = (self.clock() + seconds, value)


class GrpcSubjectDirectory:
    """SubjectDirectory over registry GetSubject. `channel` must add the service's token
    (BearerTokenClientInterceptor)."""

    def __init__(self, channel: grpc.Channel, *, timeout: float = 3.0,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self._stub: Any = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
        self._timeout = timeout
        self._cache = _TtlCache(cache_seconds)

    def get(self, subject_id: str) -> SubjectInfo | None:
        hit, cached = self._cache.get(subject_id)
        if hit:
            return cached
        try:
            response = self._stub.GetSubject(
                registry_pb2.GetSubjectRequest(subject_id=subject_id), timeout=self._timeout)
        except grpc.RpcError as error:
            code = error.code()
            if code is grpc.StatusCode.NOT_FOUND:
                self._cache.put(subject_id, None)
                return None
            if code is grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument.of("subject_id", "is not a national subject id") from None
            raise Unavailable(
                f"the registry could not be asked about subject {subject_id} ({code.name}); "
                "retry later") from None
        subject = response.subject
        info = SubjectInfo(
            subject.subject_id, subject.division_code,
            registry_pb2.SubjectStatus.Name(subject.status).removeprefix("SUBJECT_STATUS_"),
        )
        self._cache.put(subject_id, info)
        return info


class InProcessSubjectDirectory:
    """SubjectDirectory over the registry's use cases in the same process (all-in-one),
    cached like the gRPC one: a look-up is several queries in the registry."""

    def __init__(self, get_subject: Callable[[str], Any],
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self._get_subject = get_subject
        self._cache = _TtlCache(cache_seconds)

    def get(self, subject_id: str) -> SubjectInfo | None:
        hit, cached = self._cache.get(subject_id)
        if hit:
            return cached
        try:
            subject = self._get_subject(subject_id)
        except NotFound:
            self._cache.put(subject_id, None)
            return None
        except InvalidArgument:
            raise InvalidArgument.of("subject_id", "is not a national subject id") from None
        info = SubjectInfo(subject.subject_id, subject.division_code, str(subject.status.value))
        self._cache.put(subject_id, info)
        return info


def registry_directory(settings: Settings) -> tuple[GrpcSubjectDirectory, list[grpc.Channel]]:
    """The registry over gRPC, called as this process's service account; the channels to
    close on shutdown."""
    from agritrace_kernel.auth.wiring import service_channel

    channel, opened = service_channel(settings, settings.registry_address,
                                      "AGRITRACE_REGISTRY_ADDRESS")
    return GrpcSubjectDirectory(channel), opened


INACTIVE_STATUSES = frozenset({"REJECTED", "SUSPENDED"})


def require_active_subject(directory: SubjectDirectory, subject_id: str, field: str,
                           consequence: str = "") -> SubjectInfo:
    """The registered, not rejected or suspended subject a request names in `field`:
    INVALID_ARGUMENT (naming the field) when missing or malformed, NOT_FOUND when not
    registered, FAILED_PRECONDITION when rejected or suspended (`consequence` says what it
    may then not do)."""
    subject_id = subject_id.strip()
    if not subject_id:
        raise InvalidArgument.of(field, "is required")
    try:
        found = directory.get(subject_id)
    except InvalidArgument:
        raise InvalidArgument.of(field, "is not a national subject id") from None
    if found is None:
        raise NotFound(f"subject {subject_id} is not registered", reason="SUBJECT_NOT_FOUND",
                       metadata={"field": field})
    if found.status in INACTIVE_STATUSES:
        raise FailedPrecondition(
            f"subject {subject_id} is {found.status.lower()}"
            + (f"; {consequence}" if consequence else ""),
            reason="SUBJECT_NOT_ACTIVE", metadata={"field": field})
    return found
