"""The source services' event logs (agritrace.events.v1.EventLogService) as the rebuild reads
them: over gRPC from each source's server, or, in the all-in-one mode, straight from the
sources' own databases through the kernel's log reader (the platform's server serves the same
reader; a command-line rebuild has no account to call it with)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import grpc

from agritrace.events.v1 import event_log_pb2 as pb
from agritrace.events.v1 import event_log_pb2_grpc
from agritrace_kernel.events import log_service
from agritrace_kernel.events.model import Event
from agritrace_query.service_layer.projection_ports import EventLog, EventPage, LoggedEvent

CALL_TIMEOUT_SECONDS = 120.0  # a page of 5,000 large events is tens of megabytes


def _event(source: str, name: str, event_id: str, payload_json: str,
           trace_context: Mapping[str, str], occurred_at: datetime) -> Event:
    payload = json.loads(payload_json)
    return Event(source=source, name=name, payload=payload if isinstance(payload, dict) else {},
                 event_id=event_id, occurred_at=occurred_at,
                 trace_context=dict(trace_context))


class GrpcEventLog:
    """One server's EventLogService (a microservice's own log, or all the logs the all-in-one
    platform hosts)."""

    def __init__(self, channel: grpc.Channel, timeout: float = CALL_TIMEOUT_SECONDS) -> None:
        self._stub = event_log_pb2_grpc.EventLogServiceStub(channel)  # type: ignore[no-untyped-call]
        self._timeout = timeout

    def list_events(self, source: str, page_token: str, page_size: int) -> EventPage:
        response: pb.ListEventsResponse = self._stub.ListEvents(
            pb.ListEventsRequest(source=source, page_token=page_token, page_size=page_size),
            timeout=self._timeout, wait_for_ready=True)
        return EventPage(
            events=[LoggedEvent(item.position, _event(
                item.source, item.name, item.event_id, item.payload_json, item.trace_context,
                item.occurred_at.ToDatetime(tzinfo=UTC))) for item in response.events],
            next_page_token=response.next_page_token,
            newest_position=response.newest_position,
        )


class LocalEventLog:
    """The kernel's log reader over the sources' databases in this process."""

    def __init__(self, log: log_service.EventLog) -> None:
        self._log = log

    def list_events(self, source: str, page_token: str, page_size: int) -> EventPage:
        page = self._log.list_events(source, page_size, page_token)
        return EventPage(
            events=[LoggedEvent(item.position, _event(
                item.source, item.name, item.event_id, item.payload_json, item.trace_context,
                item.occurred_at)) for item in page.events],
            next_page_token=page.next_page_token,
            newest_position=page.newest_position,
        )


class RoutedEventLog:
    """Each source's log from wherever it is served."""

    def __init__(self, logs: Mapping[str, EventLog]) -> None:
        self._logs = dict(logs)

    def list_events(self, source: str, page_token: str, page_size: int) -> EventPage:
        log = self._logs.get(source)
        if log is None:
            raise ValueError(f"no event log configured for source {source!r}")
        return log.list_events(source, page_token, page_size)
