"""`agritrace.events.v1.EventLogService`: a service's outbox read back as its event log, for
consumers that rebuild a read model by replaying it (the query service).

One servicer serves every source the process hosts: a microservice its own, the all-in-one
platform registry, coding and flow on one server (where a gRPC service name can be added only
once)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import grpc
import sqlalchemy as sa
from sqlalchemy.orm import Session

from agritrace.events.v1 import event_log_pb2 as pb
from agritrace.events.v1 import event_log_pb2_grpc
from agritrace_kernel import paging
from agritrace_kernel.auth.policy import PolicyTable, authenticated
from agritrace_kernel.auth.principal import PrincipalKind
from agritrace_kernel.db import as_utc
from agritrace_kernel.errors import InvalidArgument
from agritrace_kernel.events.store import fetch_log, log_sizes, newest_position
from agritrace_kernel.grpc_kit.server import HealthCheck, ServiceRegistration

SERVICE = pb.DESCRIPTOR.services_by_name["EventLogService"]
SERVICE_NAME = SERVICE.full_name
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 5000
# A page stops before this many bytes of payloads (but holds at least one event): coding
# events list up to 10,000 codes (~200 kB), an import batch's up to 5,000 subjects, and a
# page must stay under gRPC's default 4 MB message limit of the clients reading it.
MAX_PAGE_BYTES = 2_000_000

# A log holds every event of a source, across all subjects and jurisdictions: for services
# (a consumer rebuilding its read model) and operations administrators only.
POLICIES = PolicyTable.for_service(SERVICE, {
    "ListEvents": authenticated(PrincipalKind.SERVICE, PrincipalKind.OPS_ADMIN),
})
POLICIES.check_complete(SERVICE)


@dataclass(frozen=True)
class LoggedEvent:
    """An outbox row as the log shows it. The payload stays the stored JSON text: a page can
    hold thousands of large events, and parsing them only to serialise them again is waste."""

    position: int
    event_id: str
    source: str
    name: str
    occurred_at: datetime
    payload_json: str
    trace_context: dict[str, str]

    @classmethod
    def of(cls, row: sa.Row[tuple[object, ...]]) -> LoggedEvent:
        mapping = row._mapping
        occurred_at = mapping["occurred_at"]
        assert isinstance(occurred_at, datetime)
        return cls(int(mapping["id"]), str(mapping["event_id"]), str(mapping["source"]),
                   str(mapping["name"]), as_utc(occurred_at), str(mapping["payload"]),
                   json.loads(str(mapping["trace_context"])))


@dataclass(frozen=True)
class LogPage:
    events: list[LoggedEvent]
    next_page_token: str
    newest_position: int


class EventLog:
    """The logs of the sources a process hosts: source name -> its database sessions."""

    def __init__(self, sources: Mapping[str, Callable[[], Session]]) -> None:
        self._sources = dict(sources)

    @property
    def sources(self) -> list[str]:
        return sorted(self._sources)

    def list_events(self, source: str, page_size: int = 0, page_token: str = "") -> LogPage:
        sessions = self._sources.get(source)
        if sessions is None:
            raise InvalidArgument.of(
                "source", f"must be one of {', '.join(self.sources)}" if source
                else "is required")
        size = paging.page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _position_after(page_token, source)
        with sessions() as session:
            newest = newest_position(session)
            candidates = log_sizes(session, after, size + 1)
            taken = _within_budget(candidates[:size])
            rows = fetch_log(session, after, candidates[taken - 1][0]) if taken else []
        events = [LoggedEvent.of(row) for row in rows]
        more = len(candidates) > taken
        token = paging.encode_token([source, events[-1].position]) if more and events else ""
        # Rows committed between the two reads may lie beyond `newest`.
        return LogPage(events, token, max(newest, events[-1].position if events else 0))


def _within_budget(sizes: Sequence[tuple[int, int]]) -> int:
    """How many of the next rows (id, payload bytes) a page takes: all of them, or as many as
    stay within MAX_PAGE_BYTES, never none."""
    total = 0
    for taken, (_, length) in enumerate(sizes):
        total += length
        if total > MAX_PAGE_BYTES:
            return max(taken, 1)
    return len(sizes)


def _position_after(page_token: str, source: str) -> int:
    if not page_token:
        return 0
    token_source, position = paging.decode_token(page_token, "page_token", 2)
    if token_source != source or not isinstance(position, int) or position < 0:
        raise InvalidArgument.of("page_token", "is not a token of this source's log")
    return position


class EventLogServicer(event_log_pb2_grpc.EventLogServiceServicer):
    def __init__(self, log: EventLog) -> None:
        self._log = log

    def ListEvents(  # noqa: N802 (the proto's method name)
        self, request: pb.ListEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListEventsResponse:
        page = self._log.list_events(request.source, request.page_size, request.page_token)
        response = pb.ListEventsResponse(next_page_token=page.next_page_token,
                                         newest_position=page.newest_position)
        for event in page.events:
            message = response.events.add(
                position=event.position, event_id=event.event_id, source=event.source,
                name=event.name, payload_json=event.payload_json,
                trace_context=event.trace_context)
            message.occurred_at.FromDatetime(event.occurred_at)
        return response


def registration(sources: Mapping[str, Callable[[], Session]],
                 readiness: Sequence[HealthCheck] = ()) -> ServiceRegistration:
    """The EventLogService of a server hosting `sources` (source name -> sessions on its
    database). `readiness`: the sources' database checks."""
    servicer = EventLogServicer(EventLog(sources))
    return ServiceRegistration(
        name=SERVICE_NAME,
        add_to_server=lambda server: event_log_pb2_grpc.add_EventLogServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server),
        readiness=tuple(readiness),
    )
