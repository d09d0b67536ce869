"""The gRPC face of the query service: who and where the caller is (principal, anonymous
fingerprint, place), messages to use-case calls and back. No business rules here; domain
errors become statuses in the kernel's interceptor."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import threading
from collections.abc import Callable
from datetime import UTC, date
from typing import Generic, TypeVar

import grpc
from google.type import date_pb2

from agritrace.query.v1 import query_pb2 as pb
from agritrace.query.v1 import query_pb2_grpc
from agritrace_kernel.auth.principal import current_principal
from agritrace_kernel.grpc_kit.timestamps import timestamp_fields, to_timestamp
from agritrace_query import metrics
from agritrace_query.domain.graph import EdgeView, NodeView, TraceView
from agritrace_query.domain.origin import BatchOrigin, OriginView
from agritrace_query.domain.query_log import LogEntry
from agritrace_query.domain.statistics import DivisionFigures
from agritrace_query.domain.visibility import Asker
from agritrace_query.service_layer.ports import LogFilter
from agritrace_query.service_layer.services import Caller, OriginAnswer, QueryService

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["QueryService"].full_name
SCAN_DIVISION = "x-scan-division"
FINGERPRINT_HEX = 16

# -- who and where ------------------------------------------------------------------------------


def fingerprint_key(secret: bytes) -> bytes:
    """The key of anonymous fingerprints, derived from the service's secret so the secret
    itself protects nothing else by the same hash."""
    return hmac.new(secret, b"agritrace-query-client-fingerprint", hashlib.sha256).digest()


def peer_address(peer: str) -> str:
    """The IP address of a grpc peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5"); else ""."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


@functools.lru_cache(maxsize=4096)  # parsing is a scan's dearest step after the cache look-up
def network_place(address: str) -> str:
    """The caller's network, not its address: IPv4 /24, IPv6 /48."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    prefix = 24 if ip.version == 4 else 48
    return f"ip:{ipaddress.ip_network(f'{ip}/{prefix}', strict=False)}"


def _declared(context: grpc.ServicerContext) -> tuple[str, str]:
    """The client's user agent and declared scan division, in one pass over the metadata."""
    agent = division = ""
    for name, value in context.invocation_metadata() or ():
        if not isinstance(value, str):
            continue
        lowered = name.lower()
        if lowered == "user-agent":
            agent = value.strip()
        elif lowered == SCAN_DIVISION:
            division = value.strip()
    return agent, division


@functools.lru_cache(maxsize=8192)  # a client scans many codes over one connection
def _fingerprint(key: bytes, address: str, agent: str) -> str:
    material = f"{address}|{agent}".encode()
    return hmac.new(key, material, hashlib.sha256).hexdigest()[:FINGERPRINT_HEX]


def caller_of(context: grpc.ServicerContext, key: bytes) -> Caller:
    """The caller of this call: its principal (or an anonymous fingerprint - a keyed hash of
    its address and user agent; the address is never stored) and its place (the division its
    client declares in x-scan-division, else its network prefix)."""
    address = peer_address(context.peer() or "")
    principal = current_principal()
    agent, declared = _declared(context)
    fingerprint = _fingerprint(key, address, agent) if principal is None else ""
    place = (declared if declared.isdigit() and len(declared) in (2, 4, 6)
             else network_place(address))
    return Caller(Asker.of(principal, fingerprint), place)


# -- domain -> messages -------------------------------------------------------------------------


def _date(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def _from_date(message: date_pb2.Date, present: bool) -> date | None:
    if not present:
        return None
    try:
        return date(message.year, message.month, message.day)
    except ValueError:
        return None


def origin_to_proto(view: OriginView, origin: pb.Origin | None = None
                    ) -> pb.GetOriginInfoResponse:
    """The answer's message; `origin`: its origin part built already (see QueryServicer)."""
    if view.origin is not None and origin is None:
        origin = origin_part(view)
    return pb.GetOriginInfoResponse(code=view.code, status=f"ORIGIN_STATUS_{view.status.value}",
                                    message=view.message, origin=origin)


def origin_part(view: OriginView) -> pb.Origin:
    """What a view with an origin says of its batch: the same for every code of the batch."""
    found = view.origin
    assert found is not None
    message = pb.Origin(
        product_code=found.product_code, product_name=found.product_name,
        category=found.category, producer_name=found.producer_name,
        producer_division_code=found.producer_division,
        producer_division_name=view.producer_place.name if view.producer_place else "",
        origin_division_code=found.origin_division,
        origin_division_name=view.origin_place.name if view.origin_place else "",
        production_date=_date(found.production_date), flags=found.flags,
        inspections=pb.InspectionSummary(passed=found.inspections.passed,
                                         failed=found.inspections.failed,
                                         last_result=found.inspections.last_result))
    if found.inspections.last_at is not None:
        message.inspections.last_inspection_time.CopyFrom(
            to_timestamp(found.inspections.last_at))
    if found.certificate is not None:
        c = found.certificate
        message.certificate.CopyFrom(pb.OriginCertificate(
            certificate_id=c.certificate_id, producer_name=c.producer_name,
            contact_phone_masked=c.contact_phone_masked, commitment=c.commitment,
            basis=c.basis, test_result=c.test_result))
        if c.issue_date is not None:
            message.certificate.issue_date.CopyFrom(_date(c.issue_date))
    return message


# A trace's nodes and edges are added to the answer's own fields, each built in place: a
# message built apart is copied when added (and a graph when set into a response), which
# was half of a large trace's protobuf time.
def _add_node(add: Callable[..., pb.TraceNode], view: NodeView) -> None:
    b = view.batch
    details = None if b is None else {
        "product_code": b.product_code, "product_name": b.product_name,
        "category": b.category, "quantity": b.quantity, "unit": b.unit,
        "production_date": {"year": b.production_date.year, "month": b.production_date.month,
                            "day": b.production_date.day},
        "origin_division_code": b.origin_division, "producer_subject_id": b.subject_id,
        "flags": b.flags}
    add(node_id=view.node.node_id, batch_id=view.node.batch_id,
        subject_id=view.node.subject_id, division_code=view.division_code, depth=view.depth,
        redacted=view.redacted, subject_name=view.subject_name,
        subject_kind=view.subject_kind, batch=details)


def _add_edge(add: Callable[..., pb.TraceEdge], view: EdgeView) -> None:
    edge = view.edge
    kind = f"EDGE_KIND_{edge.kind.value}"
    if view.redacted:
        add(from_node_id=edge.source.node_id, to_node_id=edge.target.node_id, kind=kind,
            redacted=True)
        return
    add(from_node_id=edge.source.node_id, to_node_id=edge.target.node_id, kind=kind,
        redacted=False, record_id=edge.record_id, quantity=edge.quantity, unit=edge.unit,
        occur_time=(timestamp_fields(edge.occurred_at) if edge.occurred_at is not None
                    else None),
        receive_time=(timestamp_fields(edge.received_at) if edge.received_at is not None
                      else None))


# The four trace RPCs' responses: each holds one graph.
TraceAnswer = TypeVar("TraceAnswer", pb.TraceCodeResponse, pb.TraceBatchResponse,
                      pb.TraceBackResponse, pb.TraceForwardResponse)


def trace_to_proto(view: TraceView, answer: TraceAnswer) -> TraceAnswer:
    """`answer` with `view` written into its graph."""
    graph = answer.graph
    graph.start_node_id = view.start.node_id
    graph.truncated = view.truncated
    graph.scope = view.scope
    add_node = graph.nodes.add
    for node in view.nodes:
        _add_node(add_node, node)
    add_edge = graph.edges.add
    for edge in view.edges:
        _add_edge(add_edge, edge)
    return answer


def entry_to_proto(entry: LogEntry) -> pb.QueryLogEntry:
    r = entry.record
    return pb.QueryLogEntry(
        seq=entry.seq, log_time=to_timestamp(r.logged_at), asker=r.asker, role=r.role,
        asker_jurisdiction=r.asker_jurisdiction, rpc=r.rpc, target=r.target,
        target_division=r.target_division, scope=r.scope, outcome=r.outcome, place=r.place,
        prev_hash=entry.prev_hash, entry_hash=entry.entry_hash)


def _statistics(row: DivisionFigures) -> pb.DivisionStatistics:
    f = row.figures
    return pb.DivisionStatistics(
        division_code=row.division_code, division_name=row.division_name,
        subjects_registered=f.subjects_registered, subjects_active=f.subjects_active,
        codes_issued=f.counter("codes_issued"), codes_activated=f.counter("codes_activated"),
        flows=f.counter("flows"), cross_province_out=f.counter("cross_province_out"),
        cross_province_in=f.counter("cross_province_in"),
        market_entries=f.counter("market_entries"),
        market_refusals=f.counter("market_refusals"), scans=f.scans, usage_rate=f.usage_rate)


# Messages kept of memoised answers and batch origins (see origin.cached_view, cached_batch).
MAX_KEPT_ANSWERS = 20_000
MAX_KEPT_ORIGINS = 4_096

Key = TypeVar("Key")
Built = TypeVar("Built")


class BuiltOnce(Generic[Key, Built]):
    """What is built from an object that comes back as the same object while unchanged (a
    memoised answer or batch origin): built once and shared (grpc only reads a message to
    serialize it). Keyed by identity, the object kept beside it so its id is not reused. When
    full, the oldest goes: dropping them all would rebuild every batch's part at once, and the
    one-off objects of batches scanned for the first time fill it steadily."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._kept: dict[int, tuple[Key, Built]] = {}
        self._adding = threading.Lock()  # look-ups need none

    def get(self, key: Key, build: Callable[[], Built]) -> Built:
        found = self._kept.get(id(key))
        if found is not None and found[0] is key:
            return found[1]
        value = build()
        with self._adding:
            if len(self._kept) >= self._max_entries:
                del self._kept[next(iter(self._kept))]  # a dict keeps insertion order
            self._kept[id(key)] = (key, value)
        return value


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, service: QueryService, fingerprint_secret: bytes) -> None:
        self.service = service
        self._key = fingerprint_key(fingerprint_secret)
        self._answers: BuiltOnce[OriginView, pb.GetOriginInfoResponse] = BuiltOnce(
            MAX_KEPT_ANSWERS)
        # The first scan of each of a batch's codes (an answer of its own) shares the
        # batch's part.
        self._origins: BuiltOnce[BatchOrigin, pb.Origin] = BuiltOnce(MAX_KEPT_ORIGINS)

    def _origin_message(self, answer: OriginAnswer) -> pb.GetOriginInfoResponse:
        view = answer.view

        def build() -> pb.GetOriginInfoResponse:
            return origin_to_proto(view, None if view.origin is None else self._origins.get(
                view.origin, lambda: origin_part(view)))

        # Only a memoised answer comes again: any other's message would never be used twice.
        return self._answers.get(view, build) if answer.memoised else build()

    def GetOriginInfo(self, request: pb.GetOriginInfoRequest,
                      context: grpc.ServicerContext) -> pb.GetOriginInfoResponse:
        caller = caller_of(context, self._key)
        answer = self.service.get_origin_info(caller, request.code)
        if answer.counterfeit_signal:
            # A division is a bounded label (~3,000 counties); network prefixes are not: they
            # are counted together, and the event carries the prefix itself.
            label = caller.place if caller.place.isdigit() else "network"
            metrics.counterfeit_signalled(label)
        return self._origin_message(answer)

    def TraceCode(self, request: pb.TraceCodeRequest,
                  context: grpc.ServicerContext) -> pb.TraceCodeResponse:
        view = self.service.trace_code(caller_of(context, self._key), request.code)
        return trace_to_proto(view, pb.TraceCodeResponse())

    def TraceBatch(self, request: pb.TraceBatchRequest,
                   context: grpc.ServicerContext) -> pb.TraceBatchResponse:
        view = self.service.trace_batch(caller_of(context, self._key), request.batch_id)
        return trace_to_proto(view, pb.TraceBatchResponse())

    def TraceBack(self, request: pb.TraceBackRequest,
                  context: grpc.ServicerContext) -> pb.TraceBackResponse:
        view = self.service.trace_back(caller_of(context, self._key), request.code,
                                       request.batch_id, request.depth)
        return trace_to_proto(view, pb.TraceBackResponse())

    def TraceForward(self, request: pb.TraceForwardRequest,
                     context: grpc.ServicerContext) -> pb.TraceForwardResponse:
        view = self.service.trace_forward(caller_of(context, self._key), request.code,
                                          request.batch_id, request.depth)
        return trace_to_proto(view, pb.TraceForwardResponse())

    def ListQueryLogs(self, request: pb.ListQueryLogsRequest,
                      context: grpc.ServicerContext) -> pb.ListQueryLogsResponse:
        selection = LogFilter(
            asker=request.asker.strip(), rpc=request.rpc.strip(),
            division_prefix=request.target_division.strip(),
            start_time=(request.start_time.ToDatetime(tzinfo=UTC)
                        if request.HasField("start_time") else None),
            end_time=(request.end_time.ToDatetime(tzinfo=UTC)
                      if request.HasField("end_time") else None))
        entries, token = self.service.list_query_logs(
            caller_of(context, self._key), selection, request.page_size, request.page_token)
        return pb.ListQueryLogsResponse(entries=[entry_to_proto(e) for e in entries],
                                        next_page_token=token)

    def VerifyQueryLog(self, request: pb.VerifyQueryLogRequest,
                       context: grpc.ServicerContext) -> pb.VerifyQueryLogResponse:
        result = self.service.verify_query_log(caller_of(context, self._key),
                                               request.first_seq, request.last_seq)
        return pb.VerifyQueryLogResponse(ok=result.ok, first_broken_seq=result.first_broken_seq,
                                         entries_checked=result.entries_checked,
                                         problem=result.problem)

    def GetStatistics(self, request: pb.GetStatisticsRequest,
                      context: grpc.ServicerContext) -> pb.GetStatisticsResponse:
        report = self.service.statistics(
            caller_of(context, self._key), request.division_code,
            _from_date(request.start_date, request.HasField("start_date")),
            _from_date(request.end_date, request.HasField("end_date")))
        return pb.GetStatisticsResponse(total=_statistics(report.total),
                                        children=[_statistics(row) for row in report.children])
