"""The query service's use cases. Each call, answered or refused, leaves one entry in the query
log: who asked (an anonymous caller by fingerprint), as what, about what, what scope it got
and how it ended. What each asker may see is decided in domain/visibility.py only."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from agritrace_kernel import paging
from agritrace_kernel.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ViolationCollector,
)
from agritrace_kernel.events.model import Event
from agritrace_query.domain import graph, origin, statistics, visibility
from agritrace_query.domain.graph import BatchInfo, Direction, Trace, TraceView
from agritrace_query.domain.origin import BatchOrigin, CodeFacts, OriginStatus, OriginView
from agritrace_query.domain.query_log import (
    LogEntry,
    Outcome,
    QueryRecord,
    Verification,
    verify,
)
from agritrace_query.domain.visibility import Asker, Scope, ScopeKind
from agritrace_query.service_layer.ports import (
    Clock,
    LogFilter,
    OriginCache,
    OriginReader,
    OutboxUnitOfWork,
    QueryLogSink,
    QueryReads,
    ReadUnitOfWork,
    batch_key,
    code_key,
)
from agritrace_registry.domain.divisions import DivisionCatalog

log = logging.getLogger(__name__)

SERVICE = "query"
COUNTERFEIT_WINDOW_SECONDS = 600
DEFAULT_COUNTERFEIT_THRESHOLD = 5
ORIGIN_CACHE_TTL_SECONDS = 300.0
LOG_PAGE_DEFAULT, LOG_PAGE_MAX = 100, 1000
VERIFY_CHUNK = 10_000


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """Who calls and from where (`place`: the division the client declared, or its network
    prefix; "" when unknown)."""

    asker: Asker
    place: str = ""


@dataclass(frozen=True)
class OriginAnswer:
    view: OriginView
    # True when this scan raised a counterfeit signal for its place.
    counterfeit_signal: bool = False
    # True when `view` is the memoised answer for its cached texts (origin.cached_view): the
    # same object comes back on every scan of the code until one of its views changes.
    memoised: bool = False


@dataclass
class _Note:
    """What a use case tells the log about its call as it learns it."""

    target: str
    target_division: str = ""
    scope: str = ScopeKind.NONE.value
    outcome: Outcome = Outcome.OK


class _Logged:
    """`with service._logged(...) as note:` - the call's entry goes to the log however the
    block ends. (A class, not a generator: it runs around every query.)"""

    __slots__ = ("_caller", "_note", "_rpc", "_service")

    def __init__(self, service: QueryService, caller: Caller, rpc: str, note: _Note) -> None:
        self._service = service
        self._caller = caller
        self._rpc = rpc
        self._note = note

    def __enter__(self) -> _Note:
        return self._note

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                 traceback: object) -> None:
        note, caller = self._note, self._caller
        if error is not None:
            note.outcome = outcome_of(error)
        asker = caller.asker
        self._service.log_sink.append(QueryRecord(
            logged_at=self._service.clock(), asker=asker.account, role=asker.role.value,
            asker_jurisdiction=asker.jurisdiction, rpc=self._rpc, target=note.target[:80],
            target_division=note.target_division, scope=note.scope, outcome=note.outcome,
            place=caller.place))


_OUTCOMES: tuple[tuple[type[DomainError], Outcome], ...] = (
    (NotFound, Outcome.NOT_FOUND), (PermissionDenied, Outcome.DENIED),
    (Unauthenticated, Outcome.UNAUTHENTICATED), (InvalidArgument, Outcome.INVALID_ARGUMENT))


def outcome_of(error: BaseException) -> Outcome:
    for kind, outcome in _OUTCOMES:
        if isinstance(error, kind):
            return outcome
    return Outcome.FAILED


def _shows_origin(facts: CodeFacts) -> bool:
    """Whether a code's answer shows its batch's origin (goods on the market or repacked)."""
    return bool(facts.batch_id) and origin.status_of(facts) in (
        OriginStatus.GENUINE_ACTIVE, OriginStatus.CONSUMED)


def _not_found(what: str, ident: str) -> NotFound:
    # The same answer for goods that do not exist and goods the caller may not see.
    return NotFound(f"no {what} {ident} among the goods you may trace",
                    reason=f"{what.upper().replace(' ', '_')}_NOT_FOUND")


@dataclass
class QueryService:
    origins: OriginReader
    cache: OriginCache
    log_sink: QueryLogSink
    reader_factory: Callable[[], ReadUnitOfWork]
    uow_factory: Callable[[], OutboxUnitOfWork]
    catalog: DivisionCatalog = field(default_factory=DivisionCatalog.bundled)
    clock: Clock = utc_now
    counterfeit_threshold: int = DEFAULT_COUNTERFEIT_THRESHOLD
    cache_ttl_seconds: float = ORIGIN_CACHE_TTL_SECONDS

    # -- the log ---------------------------------------------------------------------------

    def _logged(self, caller: Caller, rpc: str, target: str) -> _Logged:
        return _Logged(self, caller, rpc, _Note(target=target))

    # -- GetOriginInfo ---------------------------------------------------------------------

    def get_origin_info(self, caller: Caller, text: str) -> OriginAnswer:
        with self._logged(caller, "GetOriginInfo", text.strip()) as note:
            note.scope = visibility.origin_scope(caller.asker).label
            code = origin.canonical_code(text)
            memoised = False
            if code is None:
                view = origin.malformed()
            else:
                note.target = code
                view, memoised = self._origin_view(code)
            note.target_division = view.target_division
            signal = False
            if view.status in (OriginStatus.UNKNOWN, OriginStatus.MALFORMED):
                signal = self._count_unknown_scan(caller.place, view.code)
            return OriginAnswer(view, signal, memoised)

    def _origin_view(self, code: str) -> tuple[OriginView, bool]:
        """The view and whether it is memoised. Cache first (the code's view and its batch's
        in one look-up; both there: the memoised answer for those texts); else the read
        model, then the cache is filled. Unknown codes are not cached: an issue would have
        to invalidate every code it creates."""
        cached_text, cached_batch_text = self.cache.get_origin(code)
        if cached_text is not None and cached_batch_text is not None:
            return origin.cached_view(code, cached_text, cached_batch_text, self.catalog), True
        if cached_text is None:
            facts, batch = self._first_scan_facts(code)
        else:
            facts, batch = self._cached_code_facts(
                CodeFacts.from_cache(code, json.loads(cached_text)), cached_batch_text)
        return origin.view(code, facts, batch, self.catalog), False

    def _first_scan_facts(self, code: str) -> tuple[CodeFacts | None, BatchOrigin | None]:
        """A code new to the cache. Where this process may hold its batch's view (a near
        cache, the in-process one), the code's own row - the cheapest query, and most first
        scans find their batch's view here, as a batch's codes share it - then the batch's
        query only if its view is not here. Where nothing is held here (Redis alone), one
        query for the code with its batch's origin."""
        if self.cache.holds_views_locally:
            facts = self.origins.code_facts(code)
            if facts is None:
                return None, None
            self.cache.set(code_key(code), facts.to_cache(), self.cache_ttl_seconds)
            return self._cached_code_facts(
                facts, self.cache.get_local_text(batch_key(facts.batch_id)))
        found = self.origins.code_origin(code)
        if found is None:
            return None, None
        facts, batch_of_code = found
        self.cache.set(code_key(code), facts.to_cache(), self.cache_ttl_seconds)
        return facts, self._cached_batch(batch_of_code()) if _shows_origin(facts) else None

    def _cached_code_facts(self, facts: CodeFacts, cached_batch_text: str | None
                           ) -> tuple[CodeFacts, BatchOrigin | None]:
        """A code whose own view was cached, and its batch's view if that was too."""
        if not _shows_origin(facts):
            return facts, None
        if cached_batch_text is not None:
            return facts, origin.cached_batch(cached_batch_text)
        return facts, self._cached_batch(self.origins.batch_origin(facts.batch_id))

    def _cached_batch(self, batch: BatchOrigin | None) -> BatchOrigin | None:
        if batch is not None:
            self.cache.set(batch_key(batch.batch_id), batch.to_cache(), self.cache_ttl_seconds)
        return batch

    def _count_unknown_scan(self, place: str, code: str) -> bool:
        """One counterfeit_suspected event per place and window, when its unknown scans reach
        the threshold."""
        if not place:
            return False
        count = self.cache.count_unknown_scan(place, COUNTERFEIT_WINDOW_SECONDS)
        if count != self.counterfeit_threshold:
            return False
        with self.uow_factory() as uow:
            uow.publish(Event(SERVICE, "counterfeit_suspected", {
                "place": place, "unknown_scans": count,
                "window_seconds": COUNTERFEIT_WINDOW_SECONDS, "last_code": code,
                "detected_at": self.clock().isoformat()}))
            uow.commit()
        log.warning("counterfeit suspected", extra={"place": place, "unknown_scans": count})
        return True

    # -- TraceCode / TraceBatch: an operator's ±1 view --------------------------------------

    def trace_code(self, caller: Caller, text: str) -> TraceView:
        with self._logged(caller, "TraceCode", text.strip()) as note:
            scope = visibility.neighbours_scope(caller.asker, "TraceCode")
            code = _required_code(text, "code")
            note.target = code
            with self.reader_factory() as uow:
                batch = self._code_batch(uow.reads, code)
                return self._neighbours(uow.reads, batch, scope, note, _not_found("code", code))

    def trace_batch(self, caller: Caller, batch_id: str) -> TraceView:
        with self._logged(caller, "TraceBatch", batch_id.strip()) as note:
            scope = visibility.neighbours_scope(caller.asker, "TraceBatch")
            batch_id = _required(batch_id, "batch_id")
            with self.reader_factory() as uow:
                batch = uow.reads.batch(batch_id)
                if batch is None:
                    raise _not_found("batch", batch_id)
                return self._neighbours(uow.reads, batch, scope, note,
                                        _not_found("batch", batch_id))

    def _neighbours(self, reads: QueryReads, batch: BatchInfo, scope: Scope, note: _Note,
                    unseen: NotFound) -> TraceView:
        """`unseen`: the answer for an operator that never handled the goods - the one it
        would get for goods that do not exist."""
        note.target_division = batch.origin_division
        if scope.kind is ScopeKind.NEIGHBOURS:
            centres = graph.operator_centres(reads, batch, scope.subject_id)
            if not centres:
                raise unseen
        else:
            centres = graph.holders(reads, batch)
        trace = graph.neighbourhood(reads, batch, centres)
        note.scope = scope.label
        return _present(reads, trace, scope)

    # -- TraceBack / TraceForward: regulators' graphs ---------------------------------------

    def trace_back(self, caller: Caller, code: str, batch_id: str, depth: int) -> TraceView:
        return self._trace(caller, "TraceBack", Direction.BACKWARD, code, batch_id, depth)

    def trace_forward(self, caller: Caller, code: str, batch_id: str, depth: int) -> TraceView:
        return self._trace(caller, "TraceForward", Direction.FORWARD, code, batch_id, depth)

    def _trace(self, caller: Caller, rpc: str, direction: Direction, code: str, batch_id: str,
               depth: int) -> TraceView:
        with self._logged(caller, rpc, (code or batch_id).strip()) as note:
            scope = visibility.graph_scope(caller.asker, rpc)
            problems = ViolationCollector()
            if bool(code.strip()) == bool(batch_id.strip()):
                problems.add("code", "give exactly one of code and batch_id")
            if not 0 <= depth <= graph.MAX_DEPTH:
                problems.add("depth", f"must be 1-{graph.MAX_DEPTH} (0: {graph.DEFAULT_DEPTH})")
            problems.raise_if_any()
            with self.reader_factory() as uow:
                if code.strip():
                    canonical = _required_code(code, "code")
                    note.target = canonical
                    batch = self._code_batch(uow.reads, canonical)
                else:
                    found = uow.reads.batch(batch_id.strip())
                    if found is None:
                        raise _not_found("batch", batch_id.strip())
                    batch = found
                note.target_division = batch.origin_division
                trace = graph.traverse(uow.reads, batch, direction,
                                       depth or graph.DEFAULT_DEPTH)
                note.scope = scope.label
                return _present(uow.reads, trace, scope)

    def _code_batch(self, reads: QueryReads, code: str) -> BatchInfo:
        batch_id = reads.code_batch(code)
        batch = reads.batch(batch_id) if batch_id else None
        if batch is None:
            raise _not_found("code", code)
        return batch

    # -- the query log ---------------------------------------------------------------------

    def list_query_logs(self, caller: Caller, selection: LogFilter, page_size: int,
                        page_token: str) -> tuple[list[LogEntry], str]:
        with self._logged(caller, "ListQueryLogs", selection.division_prefix) as note:
            scope = visibility.query_log_scope(caller.asker)
            note.target_division = selection.division_prefix
            problems = ViolationCollector()
            prefix = selection.division_prefix
            if prefix and (len(prefix) not in (2, 4, 6) or not prefix.isdigit()):
                problems.add("target_division", "must be empty or 2, 4 or 6 digits")
            if (selection.start_time and selection.end_time
                    and selection.end_time <= selection.start_time):
                problems.add("end_time", "must be after start_time")
            size = paging.page_size(page_size, LOG_PAGE_DEFAULT, LOG_PAGE_MAX)
            problems.raise_if_any()
            if scope.kind is ScopeKind.JURISDICTION:
                selection = _within(selection, scope.jurisdiction)
            digest = _digest(selection)
            before: int | None = None
            if page_token:
                seq, token_digest = paging.decode_token(page_token, "page_token", 2)
                if token_digest != digest or not isinstance(seq, int):
                    raise InvalidArgument.of("page_token", "was issued for other filters")
                before = seq
            with self.reader_factory() as uow:
                entries = uow.log.page(selection, before, size + 1)
            note.scope = scope.label
            if len(entries) > size:
                entries = entries[:size]
                return entries, paging.encode_token([entries[-1].seq, digest])
            return entries, ""

    def verify_query_log(self, caller: Caller, first_seq: int, last_seq: int) -> Verification:
        with self._logged(caller, "VerifyQueryLog", f"{first_seq}-{last_seq}") as note:
            note.scope = visibility.check_may_verify_log(caller.asker).label
            problems = ViolationCollector()
            if first_seq < 0:
                problems.add("first_seq", "must not be negative")
            if last_seq < 0:
                problems.add("last_seq", "must not be negative")
            if last_seq and first_seq > last_seq:
                problems.add("last_seq", "must not be below first_seq")
            problems.raise_if_any()
            first = first_seq or 1
            with self.reader_factory() as uow:
                newest = uow.log.newest_seq()
                last = min(last_seq, newest) if last_seq else newest
                note.target = f"{first}-{last}"
                return _verify_chunked(uow, first, last)

    # -- statistics -------------------------------------------------------------------------

    def statistics(self, caller: Caller, division_code: str, start: date | None,
                   end: date | None) -> statistics.Report:
        division_code = division_code.strip()
        with self._logged(caller, "GetStatistics", division_code or "nation") as note:
            note.target_division = division_code
            period = statistics.check_request(self.catalog, division_code, start, end)
            scope = visibility.statistics_scope(caller.asker, division_code)
            length = statistics.child_length(division_code) or len(division_code)
            with self.reader_factory() as uow:
                rollup = uow.reads.rollup(division_code, length, period)
                rollup.scans = uow.log.scans(division_code, length, period)
                active = uow.reads.active_subjects(division_code, period)
            note.scope = scope.label
            return statistics.report(self.catalog, division_code, active, rollup)


def _required(value: str, field_name: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument.of(field_name, "is required")
    return value


def _required_code(text: str, field_name: str) -> str:
    code = origin.canonical_code(_required(text, field_name))
    if code is None:
        raise InvalidArgument.of(field_name, "is not a well-formed trace code")
    return code


def _present(reads: QueryReads, trace: Trace, scope: Scope) -> TraceView:
    missing = graph.missing_batches(trace)
    if missing:
        trace.batches.update(reads.batches(missing))
    return graph.present(trace, reads.subjects(graph.subject_ids(trace)), scope)


def _within(selection: LogFilter, jurisdiction: str) -> LogFilter:
    """A regulator's filter narrowed to its jurisdiction; a division outside it is refused."""
    prefix = selection.division_prefix
    if prefix.startswith(jurisdiction):
        return selection
    if jurisdiction.startswith(prefix):
        return LogFilter(selection.asker, selection.rpc, jurisdiction, selection.start_time,
                         selection.end_time)
    raise PermissionDenied(f"division {prefix} lies outside the caller's jurisdiction",
                           reason="OUTSIDE_JURISDICTION")


def _digest(selection: LogFilter) -> str:
    text = "|".join((selection.asker, selection.rpc, selection.division_prefix,
                     selection.start_time.isoformat() if selection.start_time else "",
                     selection.end_time.isoformat() if selection.end_time else ""))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _verify_chunked(uow: ReadUnitOfWork, first: int, last: int) -> Verification:
    """The chain over first..last, read VERIFY_CHUNK entries at a time."""
    if last < first:
        return Verification(True, 0, 0)
    before = uow.log.entries(first - 1, first - 1) if first > 1 else []
    previous = before[0] if before else None
    checked = 0
    for low in range(first, last + 1, VERIFY_CHUNK):
        high = min(low + VERIFY_CHUNK - 1, last)
        entries = uow.log.entries(low, high)
        result = verify(entries, low, high, previous)
        checked += result.entries_checked
        if not result.ok:
            return Verification(False, result.first_broken_seq, checked, result.problem)
        previous = entries[-1]
    return Verification(True, 0, checked)
