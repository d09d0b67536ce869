"""The coding use cases. Each command runs in one unit of work: the codes, the idempotency
record and the one event announcing the operation commit together, or nothing does."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from agritrace_coding.domain import codes as code_format
from agritrace_coding.domain.model import (
    MAX_DERIVED,
    MAX_LINE_REQUEST,
    MAX_LISTED_CODES,
    MAX_ONLINE_QUANTITY,
    MAX_QUANTITY,
    CodeRecord,
    CodeState,
    Derivation,
    DeriveReason,
    IllegalMove,
    Issuance,
    IssueMode,
    LabelFormat,
    SerialRange,
    check_batch_id,
    check_quantity,
    check_reason,
    refuse_illegal,
    sources_of,
)
from agritrace_coding.service_layer import access
from agritrace_coding.service_layer.access import Actor
from agritrace_coding.service_layer.ports import (
    CodeReader,
    DuplicateCode,
    Move,
    Selection,
    SubjectDirectory,
    SubjectInfo,
    UnitOfWork,
)
from agritrace_kernel import paging
from agritrace_kernel.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import (
    RequestRecord,
    check_request_id,
    earlier_result,
    fingerprint,
)
from agritrace_kernel.registry_client import require_active_subject

SERVICE = "coding"
# An event lists at most this many codes; an operation with more announces itself in several
# events of the same name, its parts (consumers learn every code without one huge message).
EVENT_CODE_LIMIT = 10_000
DEFAULT_ISSUANCE_PAGE, MAX_ISSUANCE_PAGE = 50, 1000
DEFAULT_CODE_PAGE, MAX_CODE_PAGE = 100, 10_000
MAX_LINEAGE_DEPTH = 20
MAX_SHEET_LABELS = 1000
# Rendering a label's QR code costs ~4 ms (segno's mask selection), so a ZIP of labels covers
# at most this many codes per request (~1.5 min); larger runs go as CSV or range by range.
MAX_ZIP_LABELS = 20_000
ISSUE_ATTEMPTS = 3
LINE_ABANDONED_AFTER = timedelta(minutes=5)
LINE_VOID_REASON = "production line stream ended before the code was acknowledged as printed"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_issuance_id() -> int:
    """Time-ordered 63-bit ids: milliseconds since the epoch, then 22 random bits."""
    return (time.time_ns() // 1_000_000) << 22 | secrets.randbits(22)


class LabelRenderer(Protocol):
    def render_label(self, code: str, url: str, fmt: LabelFormat) -> bytes: ...
    def render_sheet(self, labels: Sequence[tuple[str, str]]) -> tuple[bytes, int]: ...
    def labels_zip(self, items: Iterator[tuple[int, str, str]]) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class IssueResult:
    issuance: Issuance
    codes: list[CodeRecord]
    replayed: bool = False


@dataclass(frozen=True)
class MoveResult:
    moved: int
    activated: int = 0
    replayed: bool = False
    provinces: tuple[str, ...] = ()  # of the codes moved (empty on a replay)


@dataclass(frozen=True)
class Verification:
    code: str
    well_formed: bool
    check_valid: bool
    exists: bool
    state: CodeState | None
    province: str
    summary: str
    subject_id: str = ""
    product_batch_id: str = ""


@dataclass(frozen=True)
class Lineage:
    code: str
    ancestors: list[Derivation]
    descendants: list[Derivation]


_SUMMARIES = {
    CodeState.ISSUED: "not activated: issued, not printed yet",
    CodeState.PRINTED: "not activated: printed, not yet bound to goods",
    CodeState.ACTIVE: "genuine and active",
    CodeState.CONSUMED: "replaced by a new code: the goods were mixed or repacked",
    CodeState.VOID: "void: withdrawn by its holder",
}


def parse_code(text: str, field_path: str) -> str:
    """A code from a request, canonical and with a valid check character."""
    if not text.strip():
        raise InvalidArgument.of(field_path, "is required")
    try:
        parsed = code_format.parse(text)
    except code_format.CodeFormatError as error:
        raise InvalidArgument.of(field_path, f"is not a trace code: {error.reason}") from None
    if not parsed.check_valid:
        raise InvalidArgument.of(field_path, "fails its check character (mistyped?)")
    return parsed.code


def parse_code_list(texts: Sequence[str], field_path: str = "codes") -> list[str]:
    if not texts:
        raise InvalidArgument.of(field_path, "names no code")
    if len(texts) > MAX_LISTED_CODES:
        raise InvalidArgument.of(field_path, f"names more than {MAX_LISTED_CODES:,} codes")
    parsed = [parse_code(text, f"{field_path}[{index}]") for index, text in enumerate(texts)]
    return list(dict.fromkeys(parsed))


def parse_issuance_id(text: str, field_path: str = "issuance_id") -> int:
    if not text.strip():
        raise InvalidArgument.of(field_path, "is required")
    if not text.strip().isdigit() or len(text.strip()) > 19:
        raise InvalidArgument.of(field_path, "is not an issuance id")
    return int(text.strip())


def _parts(count: int) -> list[tuple[int, int]]:
    """(offset, size) of each part of an operation on `count` codes, in order: at most
    EVENT_CODE_LIMIT codes each; one part even when there are no codes."""
    return [(offset, min(EVENT_CODE_LIMIT, count - offset))
            for offset in range(0, count, EVENT_CODE_LIMIT)] or [(0, 0)]


def _part_payload(codes: Sequence[str], part: int, parts: int) -> dict[str, object]:
    """The codes of one part: `code_count` counts this part's codes (summed over the parts,
    the operation's)."""
    return {"codes": list(codes), "code_count": len(codes), "part": part, "parts": parts}


def _selection_parts(uow: UnitOfWork, selection: Selection) -> list[dict[str, object]]:
    """The codes an operation moved, part by part (for a range, each part also names its
    sub-range). A range's codes are read in the operation's own transaction, a part at a
    time (every code of a range moves, or none)."""
    parts = _parts(len(selection) if not isinstance(selection, SerialRange)
                   else selection.size)
    described: list[dict[str, object]] = []
    for number, (offset, size) in enumerate(parts, start=1):
        if not isinstance(selection, SerialRange):
            described.append(_part_payload(selection[offset:offset + size], number, len(parts)))
            continue
        first = selection.first_serial + offset
        codes = [record.code for record in uow.codes.list_codes(
            selection.issuance_id, first - 1, size, None)]
        described.append({
            "range": {"issuance_id": str(selection.issuance_id), "first_serial": first,
                      "last_serial": first + size - 1},
            **_part_payload(codes, number, len(parts)),
        })
    return described


class CodingService:
    """Application service: the use cases, with their collaborators injected."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        subjects: SubjectDirectory,
        code_reader: CodeReader,
        labels: LabelRenderer,
        *,
        resolver_base_url: str,
        clock: Clock = utc_now,
        generate: Callable[[str, int], list[str]] = code_format.new_codes,
        issuance_ids: Callable[[], int] = new_issuance_id,
        reader_factory: Callable[[], UnitOfWork] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.reader_factory = reader_factory or uow_factory
        self.subjects = subjects
        self.code_reader = code_reader
        self.labels = labels
        self.resolver_base_url = resolver_base_url
        self.clock = clock
        self.generate = generate
        self.issuance_ids = issuance_ids

    def url(self, code: str) -> str:
        return code_format.resolver_url(self.resolver_base_url, code)

    # -- issuing ----------------------------------------------------------------------------

    def _subject(self, subject_id: str, field_path: str = "subject_id") -> SubjectInfo:
        return require_active_subject(self.subjects, subject_id, field_path,
                                      "it cannot receive codes")

    def issue_codes(
        self,
        request_id: str,
        subject_id: str,
        mode: IssueMode | None,
        quantity: int,
        product_batch_id: str = "",
        printer_subject_id: str = "",
        *,
        actor: Actor = None,
    ) -> IssueResult:
        request_id = check_request_id(request_id)
        if mode not in (IssueMode.ONLINE, IssueMode.DOWNLOAD, IssueMode.PRE_PRINT):
            raise InvalidArgument.of("mode", "must be ONLINE, DOWNLOAD or PRE_PRINT "
                                     "(production lines use StreamCodes)")
        limit = MAX_ONLINE_QUANTITY if mode is IssueMode.ONLINE else MAX_QUANTITY
        check_quantity(quantity, limit)
        batch = check_batch_id(product_batch_id, required=False)
        printer = printer_subject_id.strip()
        if mode is IssueMode.PRE_PRINT and batch:
            raise InvalidArgument.of(
                "product_batch_id", "pre-print codes are bound to a batch later (ActivateCodes)"
            )
        if printer and mode is not IssueMode.PRE_PRINT:
            raise InvalidArgument.of("printer_subject_id", "is only for PRE_PRINT runs")
        request_fingerprint = fingerprint("issue", subject_id.strip(), mode, quantity, batch,
                                          printer)
        replay = self._earlier_issue(request_id, "issue", request_fingerprint, actor,
                                     want_codes=mode is IssueMode.ONLINE)
        if replay is not None:
            return replay
        subject = self._subject(subject_id)
        access.check_issue(actor, subject.subject_id, subject.division_code)
        if printer:
            self._subject(printer, "printer_subject_id")

        def issuance(issuance_id: int) -> Issuance:
            return Issuance(
                issuance_id=issuance_id, subject_id=subject.subject_id,
                subject_division=subject.division_code, province=subject.province, mode=mode,
                quantity=quantity, product_batch_id=batch, printer_subject_id=printer,
                line_id="", created_at=self.clock(), created_by=actor.account_id if actor else "",
            )

        return self._issue(request_id, "issue", request_fingerprint, issuance,
                           want_codes=mode is IssueMode.ONLINE)

    def _earlier_issue(self, request_id: str, operation: str, request_fingerprint: str,
                       actor: Actor, *, want_codes: bool) -> IssueResult | None:
        """A retry's first result, answered before asking the registry again (a retry after
        the subject was suspended, or while the registry is down, still gets its codes)."""
        with self.reader_factory() as uow:
            earlier = earlier_result(uow.requests, request_id, operation, request_fingerprint)
            if earlier is None:
                return None
            replay = self._replay(uow, int(earlier), want_codes)
        access.check_issue(actor, replay.issuance.subject_id, replay.issuance.subject_division)
        return replay

    def _issue(
        self,
        request_id: str,
        operation: str,
        request_fingerprint: str,
        build: Callable[[int], Issuance],
        *,
        want_codes: bool,
        parents: Sequence[str] = (),
        derive_reason: DeriveReason | None = None,
        actor: Actor = None,
    ) -> IssueResult:
        """Issues a whole issuance in one transaction, retried when a fresh code collides
        with a stored one or when a concurrent request with the same id won."""
        for attempt in range(ISSUE_ATTEMPTS):
            try:
                with self.uow_factory() as uow:
                    earlier = earlier_result(uow.requests, request_id, operation,
                                             request_fingerprint)
                    if earlier is not None:
                        return self._replay(uow, int(earlier), want_codes)
                    issuance = build(self.issuance_ids())
                    # The request id first: a concurrent duplicate waits on it, then loses.
                    uow.requests.record(request_id, RequestRecord(
                        operation, request_fingerprint, str(issuance.issuance_id)))
                    uow.codes.add_issuance(issuance)
                    # Serials follow the codes' sort order: the rows then reach both indexes
                    # in key order, which makes a million-code insert ~25% faster. The codes
                    # are random, so their order tells nothing about unissued codes.
                    generated = sorted(self.generate(issuance.province, issuance.quantity))
                    uow.codes.add_codes(issuance.issuance_id, 1, generated, CodeState.ISSUED)
                    if parents:
                        self._consume_parents(uow, issuance, parents, derive_reason, actor)
                        events = self._derived_events(issuance, parents, generated,
                                                      derive_reason)
                    else:
                        events = self._issued_events(issuance, generated, 1)
                    for event in events:
                        uow.publish(event)
                    uow.commit()
            except DuplicateCode:
                continue
            except AlreadyExists as error:
                if error.reason == "CONCURRENT_DUPLICATE" and attempt + 1 < ISSUE_ATTEMPTS:
                    continue
                raise
            records = (
                [self._record(issuance, code, serial)
                 for serial, code in enumerate(generated, start=1)]
                if want_codes else []
            )
            return IssueResult(issuance, records)
        raise ConcurrencyConflict(
            "could not store the issuance after several attempts; retry with the same "
            "request_id", reason="ISSUE_RETRIES_EXHAUSTED",
        )

    @staticmethod
    def _record(issuance: Issuance, code: str, serial: int) -> CodeRecord:
        return CodeRecord(
            code=code, issuance_id=issuance.issuance_id, serial=serial, state=CodeState.ISSUED,
            product_batch_id=issuance.product_batch_id, subject_id=issuance.subject_id,
            subject_division=issuance.subject_division,
            printer_subject_id=issuance.printer_subject_id,
        )

    def _replay(self, uow: UnitOfWork, issuance_id: int, want_codes: bool) -> IssueResult:
        issuance = uow.codes.get_issuance(issuance_id)
        assert issuance is not None, "a request log entry names an issuance that is missing"
        records = (uow.codes.list_codes(issuance_id, 0, issuance.quantity, None)
                   if want_codes else [])
        return IssueResult(issuance, records, replayed=True)

    @staticmethod
    def _issuance_payload(issuance: Issuance) -> dict[str, object]:
        return {
            "issuance_id": str(issuance.issuance_id),
            "subject_id": issuance.subject_id,
            "subject_division": issuance.subject_division,
            "province": issuance.province,
            "mode": issuance.mode.value,
            "product_batch_id": issuance.product_batch_id,
            "printer_subject_id": issuance.printer_subject_id,
            "line_id": issuance.line_id,
        }

    def _issued_events(self, issuance: Issuance, codes: Sequence[str], first: int
                       ) -> list[Event]:
        """`codes_issued` for codes just generated with serials from `first`, part by part
        (the codes are in memory already: parts are slices of them, nothing is read)."""
        described = self._issuance_payload(issuance)
        parts = _parts(len(codes))
        return [Event(SERVICE, "codes_issued", {
            **described,
            "first_serial": first + offset,
            "last_serial": first + offset + size - 1,
            **_part_payload(codes[offset:offset + size], number, len(parts)),
        }) for number, (offset, size) in enumerate(parts, start=1)]

    def _derived_events(self, issuance: Issuance, parents: Sequence[str],
                        children: Sequence[str], reason: DeriveReason | None) -> list[Event]:
        described = {**self._issuance_payload(issuance),
                     "reason": reason.value if reason else "", "parent_codes": list(parents)}
        parts = _parts(len(children))
        return [Event(SERVICE, "codes_derived", {
            **described, **_part_payload(children[offset:offset + size], number, len(parts)),
        }) for number, (offset, size) in enumerate(parts, start=1)]

    # -- reading ----------------------------------------------------------------------------

    def get_issuance(
        self, issuance_id: str, *, actor: Actor = None
    ) -> tuple[Issuance, dict[CodeState, int]]:
        ident = parse_issuance_id(issuance_id)
        with self.reader_factory() as uow:
            issuance = self._require_issuance(uow, ident)
            access.check_read(actor, issuance)
            return issuance, uow.codes.state_counts(ident)

    def list_issuances(
        self, subject_id: str, page_size: int, page_token: str, *, actor: Actor = None
    ) -> tuple[list[tuple[Issuance, dict[CodeState, int]]], str]:
        subject_id = subject_id.strip()
        if not subject_id:
            raise InvalidArgument.of("subject_id", "is required")
        size = paging.page_size(page_size, DEFAULT_ISSUANCE_PAGE, MAX_ISSUANCE_PAGE)
        subject = self.subjects.get(subject_id)
        if subject is None:
            raise NotFound(f"subject {subject_id} is not registered", reason="SUBJECT_NOT_FOUND")
        access.check_list(actor, subject.subject_id, subject.division_code)
        before: tuple[datetime, int] | None = None
        if page_token:
            created, ident, owner = paging.decode_token(page_token, "page_token", 3)
            if owner != subject_id:
                raise InvalidArgument.of("page_token", "was issued for another subject")
            before = (datetime.fromisoformat(str(created)), int(str(ident)))
        with self.reader_factory() as uow:
            page = uow.codes.list_issuances(subject_id, before, size + 1)
            more = len(page) > size
            page = page[:size]
            # A printer's list holds other subjects' runs: only those the caller may read.
            result = [(issuance, uow.codes.state_counts(issuance.issuance_id))
                      for issuance in page if access.may_read(actor, issuance)]
        token = paging.encode_token([page[-1].created_at.isoformat(),
                                     str(page[-1].issuance_id), subject_id]) if more else ""
        return result, token

    def list_codes(
        self, issuance_id: str, page_size: int, page_token: str, state: CodeState | None,
        *, actor: Actor = None,
    ) -> tuple[list[CodeRecord], str]:
        ident = parse_issuance_id(issuance_id)
        size = paging.page_size(page_size, DEFAULT_CODE_PAGE, MAX_CODE_PAGE)
        after = 0
        if page_token:
            after_raw, token_issuance, token_state = paging.decode_token(
                page_token, "page_token", 3)
            if token_issuance != str(ident) or token_state != (state or ""):
                raise InvalidArgument.of("page_token", "was issued for other filters")
            after = int(str(after_raw))
        with self.reader_factory() as uow:
            issuance = self._require_issuance(uow, ident)
            access.check_read(actor, issuance)
            page = uow.codes.list_codes(ident, after, size + 1, state)
        more = len(page) > size
        page = page[:size]
        token = paging.encode_token([page[-1].serial, str(ident), state or ""]) if more else ""
        return page, token

    def export_range(
        self, issuance_id: str, first_serial: int, last_serial: int, *, labels: bool = False,
        actor: Actor = None,
    ) -> SerialRange:
        """Checks an export request (`labels`: a ZIP of labels, not CSV); the entrypoint then
        streams `export_rows` or `export_labels_zip`."""
        ident = parse_issuance_id(issuance_id)
        with self.reader_factory() as uow:
            issuance = self._require_issuance(uow, ident)
            access.check_handle(actor, issuance)
        selection = self._range(issuance, first_serial or 1, last_serial or issuance.quantity,
                                "first_serial", "last_serial")
        if labels and selection.size > MAX_ZIP_LABELS:
            raise InvalidArgument.of(
                "last_serial", f"a ZIP of labels holds at most {MAX_ZIP_LABELS:,} codes; export "
                "a serial range at a time, or the CSV")
        return selection

    def export_rows(self, selection: SerialRange) -> Iterator[list[tuple[int, str, str]]]:
        """(serial, code, resolver URL) of a checked range, a chunk at a time."""
        for chunk in self.code_reader.serials(selection, 5000):
            yield [(serial, code, self.url(code)) for serial, code in chunk]

    def export_labels_zip(self, selection: SerialRange) -> Iterator[tuple[bytes, int]]:
        """A ZIP of one SVG label per code of a checked range, streamed: (bytes, codes
        written so far) pairs."""
        written = 0

        def rows() -> Iterator[tuple[int, str, str]]:
            nonlocal written
            for chunk in self.export_rows(selection):
                for row in chunk:
                    written += 1  # counted before the renderer may yield a chunk with it
                    yield row

        for data in self.labels.labels_zip(rows()):
            yield data, written

    @staticmethod
    def _range(issuance: Issuance, first: int, last: int, first_field: str,
               last_field: str) -> SerialRange:
        if first < 1:
            raise InvalidArgument.of(first_field, "must be at least 1")
        if last > issuance.quantity:
            raise InvalidArgument.of(
                last_field, f"is beyond the issuance's last serial {issuance.quantity}")
        if last < first:
            raise InvalidArgument.of(last_field, f"must be at least {first_field}")
        return SerialRange(issuance.issuance_id, first, last)

    @staticmethod
    def _require_issuance(uow: UnitOfWork, issuance_id: int) -> Issuance:
        issuance = uow.codes.get_issuance(issuance_id)
        if issuance is None:
            raise NotFound(f"issuance {issuance_id} does not exist",
                           reason="ISSUANCE_NOT_FOUND")
        return issuance

    def verify(self, text: str, *, actor: Actor = None) -> Verification:
        """The scan hot path: parsing, the check character, then one indexed read."""
        if not text.strip():
            raise InvalidArgument.of("code", "is required")
        try:
            parsed = code_format.parse(text)
        except code_format.CodeFormatError as error:
            return Verification("", False, False, False, None, "",
                                f"not a trace code: {error.reason}")
        if not parsed.check_valid:
            return Verification(parsed.code, True, False, False, None, parsed.province,
                                "the check character does not match: mistyped or counterfeit")
        record = self.code_reader.find(parsed.code)
        if record is None:
            return Verification(parsed.code, True, True, False, None, parsed.province,
                                "no such code was issued: possibly counterfeit")
        details = access.sees_details(actor)
        return Verification(
            parsed.code, True, True, True, record.state, parsed.province,
            _SUMMARIES[record.state],
            subject_id=record.subject_id if details else "",
            product_batch_id=record.product_batch_id if details else "",
        )

    def lineage(self, text: str, depth: int, *, actor: Actor = None) -> Lineage:
        code = parse_code(text, "code")
        if depth < 0 or depth > MAX_LINEAGE_DEPTH:
            raise InvalidArgument.of("depth", f"must be between 0 and {MAX_LINEAGE_DEPTH}")
        depth = depth or 1
        with self.reader_factory() as uow:
            record = self._require_codes(uow, [code])[code]
            issuance = self._require_issuance(uow, record.issuance_id)
            access.check_read(actor, issuance)
            ancestors = self._walk(uow, [code], depth, upward=True)
            descendants = self._walk(uow, [code], depth, upward=False)
        return Lineage(code, ancestors, descendants)

    @staticmethod
    def _walk(uow: UnitOfWork, start: list[str], depth: int, *, upward: bool) -> list[Derivation]:
        found: list[Derivation] = []
        seen: set[int] = set()
        frontier = start
        for _ in range(depth):
            next_frontier: list[str] = []
            if upward:
                issuance_ids = {record.issuance_id
                                for record in uow.codes.find_codes(frontier).values()}
            else:
                issuance_ids = {ident for code in frontier
                                if (ident := uow.codes.derivation_consuming(code)) is not None}
            for ident in sorted(issuance_ids - seen):
                seen.add(ident)
                derivation = uow.codes.derivation_of(ident)
                if derivation is None:
                    continue
                found.append(derivation)
                next_frontier.extend(
                    derivation.parent_codes if upward else derivation.child_codes)
            if not next_frontier:
                break
            frontier = next_frontier
        return found

    # -- moves ------------------------------------------------------------------------------

    def _selection(self, uow: UnitOfWork, codes: Sequence[str], serial_range: tuple[str, int, int]
                   | None) -> tuple[Selection, list[Issuance], dict[str, CodeRecord]]:
        """The selection of a request (codes, or a range; exactly one), its issuances, and
        the records of listed codes."""
        if codes and serial_range is not None:
            raise InvalidArgument.of("range", "give either codes or a range, not both")
        if serial_range is None:
            listed = parse_code_list(codes)
            records = self._require_codes(uow, listed)
            issuance_ids = sorted({record.issuance_id for record in records.values()})
            issuances = [self._require_issuance(uow, ident) for ident in issuance_ids]
            return listed, issuances, records
        ident = parse_issuance_id(serial_range[0], "range.issuance_id")
        issuance = self._require_issuance(uow, ident)
        selection = self._range(issuance, serial_range[1], serial_range[2],
                                "range.first_serial", "range.last_serial")
        return selection, [issuance], {}

    @staticmethod
    def _require_codes(uow: UnitOfWork, listed: Sequence[str]) -> dict[str, CodeRecord]:
        records = uow.codes.find_codes(listed)
        missing = [code for code in listed if code not in records]
        if missing:
            raise NotFound(
                f"{len(missing)} code(s) were never issued: {', '.join(missing[:5])}",
                reason="CODE_NOT_FOUND", metadata={"missing": str(len(missing))},
            )
        return records

    @staticmethod
    def _check_sources(uow: UnitOfWork, selection: Selection, records: dict[str, CodeRecord],
                       move: Move) -> int:
        """Refuses the move unless every selected code may make it; the selection's size."""
        if isinstance(selection, SerialRange):
            refused, offenders = uow.codes.range_offenders(selection, move.sources, 5)
            refuse_illegal(move.target, offenders, refused)
            return selection.size
        offenders = {code: record.state for code, record in records.items()
                     if record.state not in move.sources}
        refuse_illegal(move.target, offenders, len(offenders))
        return len(selection)

    def _move(
        self,
        request_id: str,
        operation: str,
        codes: Sequence[str],
        serial_range: tuple[str, int, int] | None,
        move: Move | Callable[[list[Issuance]], Move],
        check: Callable[[Actor, Issuance], None],
        events: Callable[[UnitOfWork, Selection, list[Issuance], int, int], list[Event]],
        *,
        actor: Actor,
        reason: str | None = None,
    ) -> MoveResult:
        request_id = check_request_id(request_id)
        template = move if isinstance(move, Move) else None
        request_fingerprint = fingerprint(
            operation, sorted(codes), serial_range,
            template.product_batch_id if template else None,
            template.reason if template else reason)
        with self.uow_factory() as uow:
            earlier = earlier_result(uow.requests, request_id, operation, request_fingerprint)
            if earlier is not None:
                moved, activated = (int(part) for part in earlier.split(":"))
                return MoveResult(moved, activated, replayed=True)
            selection, issuances, records = self._selection(uow, codes, serial_range)
            for issuance in issuances:
                check(actor, issuance)
            if not isinstance(move, Move):
                move = move(issuances)
            expected = self._check_sources(uow, selection, records, move)
            activated = 0
            if move.bound_target is not None:
                if isinstance(selection, SerialRange):
                    activated = selection.size if issuances[0].product_batch_id else 0
                else:
                    activated = sum(1 for record in records.values() if record.product_batch_id)
            moved = uow.codes.apply(selection, move, self.clock())
            if moved != expected:
                raise ConcurrencyConflict(
                    "some of the codes changed state meanwhile; nothing was changed, retry",
                    reason="CODES_CHANGED_CONCURRENTLY",
                )
            uow.requests.record(request_id, RequestRecord(
                operation, request_fingerprint, f"{moved}:{activated}"))
            for event in events(uow, selection, issuances, moved, activated):
                uow.publish(event)
            uow.commit()
        return MoveResult(moved, activated,
                          provinces=tuple(sorted({i.province for i in issuances})))

    @staticmethod
    def _events(uow: UnitOfWork, selection: Selection, issuances: list[Issuance],
                announcements: Sequence[tuple[str, dict[str, object]]]) -> list[Event]:
        """The events of one move: for each (name, extra) announced, one event per part of
        the moved codes, all parts of a name before the next name. The codes are read once
        for all names. `extra` (e.g. how many moved) is the whole operation's, on every
        part."""
        concerned: dict[str, object] = {
            "subject_ids": sorted({issuance.subject_id for issuance in issuances}),
            "issuance_ids": [str(issuance.issuance_id) for issuance in issuances],
            "provinces": sorted({issuance.province for issuance in issuances}),
        }
        parts = _selection_parts(uow, selection)
        return [Event(SERVICE, name, {**concerned, **part, **extra})
                for name, extra in announcements for part in parts]

    def mark_printed(
        self, request_id: str, codes: Sequence[str], serial_range: tuple[str, int, int] | None,
        *, actor: Actor = None,
    ) -> MoveResult:
        move = Move(frozenset({CodeState.ISSUED}), CodeState.PRINTED,
                    bound_target=CodeState.ACTIVE)

        def events(uow: UnitOfWork, selection: Selection, issuances: list[Issuance],
                   moved: int, activated: int) -> list[Event]:
            announcements: list[tuple[str, dict[str, object]]] = [
                ("codes_printed", {"printed": moved, "activated": activated})]
            if activated:
                announcements.append(("codes_activated", {
                    "activated": activated,
                    "product_batch_ids": sorted({i.product_batch_id for i in issuances
                                                 if i.product_batch_id}),
                    "on_print": True,
                }))
            return self._events(uow, selection, issuances, announcements)

        return self._move(request_id, "print", codes, serial_range, move, access.check_handle,
                          events, actor=actor)

    def activate(
        self, request_id: str, product_batch_id: str, codes: Sequence[str],
        serial_range: tuple[str, int, int] | None, *, actor: Actor = None,
    ) -> MoveResult:
        batch = check_batch_id(product_batch_id, required=True)
        move = Move(sources_of(CodeState.ACTIVE) - {CodeState.ACTIVE}, CodeState.ACTIVE,
                    product_batch_id=batch)

        def events(uow: UnitOfWork, selection: Selection, issuances: list[Issuance],
                   moved: int, activated: int) -> list[Event]:
            return self._events(uow, selection, issuances, [("codes_activated", {
                "activated": moved, "product_batch_ids": [batch], "on_print": False})])

        result = self._move(request_id, "activate", codes, serial_range, move,
                            access.check_owner, events, actor=actor)
        return MoveResult(result.moved, result.moved, result.replayed, result.provinces)

    def void(
        self, request_id: str, codes: Sequence[str], serial_range: tuple[str, int, int] | None,
        reason: str, *, actor: Actor = None,
    ) -> MoveResult:
        reason = check_reason(reason)

        def move(issuances: list[Issuance]) -> Move:
            # A printing company voids spoiled labels; codes on goods are the owner's.
            owner = all(access.acts_as_owner(actor, issuance) for issuance in issuances)
            sources = sources_of(CodeState.VOID) if owner else frozenset(
                {CodeState.ISSUED, CodeState.PRINTED})
            return Move(sources, CodeState.VOID, reason=reason)

        def events(uow: UnitOfWork, selection: Selection, issuances: list[Issuance],
                   moved: int, activated: int) -> list[Event]:
            return self._events(uow, selection, issuances,
                                [("codes_voided", {"voided": moved, "reason": reason})])

        return self._move(request_id, "void", codes, serial_range, move, access.check_handle,
                          events, actor=actor, reason=reason)

    # -- derivation -------------------------------------------------------------------------

    def derive(
        self, request_id: str, subject_id: str, parent_codes: Sequence[str],
        product_batch_id: str, quantity: int, reason: str, *, actor: Actor = None,
    ) -> IssueResult:
        request_id = check_request_id(request_id)
        parents = parse_code_list(parent_codes, "parent_codes")
        if len(parents) > MAX_DERIVED:
            raise InvalidArgument.of("parent_codes", f"names more than {MAX_DERIVED:,} codes")
        batch = check_batch_id(product_batch_id, required=True)
        check_quantity(quantity, MAX_DERIVED)
        try:
            derive_reason = DeriveReason(reason.strip().upper())
        except ValueError:
            raise InvalidArgument.of(
                "reason", "must be MIX, REPACK, PROCESS or SPLIT") from None
        request_fingerprint = fingerprint("derive", subject_id.strip(), sorted(parents), batch,
                                          quantity, derive_reason)
        replay = self._earlier_issue(request_id, "derive", request_fingerprint, actor,
                                     want_codes=True)
        if replay is not None:
            return replay
        subject = self._subject(subject_id)
        access.check_issue(actor, subject.subject_id, subject.division_code)

        def issuance(issuance_id: int) -> Issuance:
            return Issuance(
                issuance_id=issuance_id, subject_id=subject.subject_id,
                subject_division=subject.division_code, province=subject.province,
                mode=IssueMode.DERIVED, quantity=quantity, product_batch_id=batch,
                printer_subject_id="", line_id="", created_at=self.clock(),
                created_by=actor.account_id if actor else "",
            )

        return self._issue(request_id, "derive", request_fingerprint, issuance, want_codes=True,
                           parents=parents, derive_reason=derive_reason, actor=actor)

    def _consume_parents(self, uow: UnitOfWork, issuance: Issuance, parents: Sequence[str],
                         reason: DeriveReason | None, actor: Actor) -> None:
        records = self._require_codes(uow, parents)
        for ident in sorted({record.issuance_id for record in records.values()}):
            access.check_owner(actor, self._require_issuance(uow, ident))
        move = Move(frozenset({CodeState.ACTIVE}), CodeState.CONSUMED)
        expected = self._check_sources(uow, parents, records, move)
        if uow.codes.apply(parents, move, self.clock()) != expected:
            raise ConcurrencyConflict(
                "some parent codes changed state meanwhile; nothing was changed, retry",
                reason="CODES_CHANGED_CONCURRENTLY",
            )
        assert reason is not None
        uow.codes.add_derivation(issuance.issuance_id, parents, reason)

    # -- labels -----------------------------------------------------------------------------

    def render_label(
        self, text: str, fmt: LabelFormat, *, actor: Actor = None
    ) -> tuple[bytes, str]:
        code = parse_code(text, "code")
        with self.reader_factory() as uow:
            record = self._require_codes(uow, [code])[code]
            access.check_handle(actor, self._require_issuance(uow, record.issuance_id))
        if record.state in (CodeState.VOID, CodeState.CONSUMED):
            raise IllegalMove(f"code {code} is {record.state}; its label must not be printed")
        url = self.url(code)
        return self.labels.render_label(code, url, fmt), url

    def render_sheet(
        self, codes: Sequence[str], serial_range: tuple[str, int, int] | None,
        *, actor: Actor = None,
    ) -> tuple[bytes, int, int]:
        with self.reader_factory() as uow:
            selection, issuances, _ = self._selection(uow, codes, serial_range)
            for issuance in issuances:
                access.check_handle(actor, issuance)
            if isinstance(selection, SerialRange):
                if selection.size > MAX_SHEET_LABELS:
                    raise InvalidArgument.of(
                        "range", f"spans more than {MAX_SHEET_LABELS:,} labels")
                listed = [code for chunk in self.code_reader.serials(selection, MAX_SHEET_LABELS)
                          for _, code in chunk]
            else:
                if len(selection) > MAX_SHEET_LABELS:
                    raise InvalidArgument.of(
                        "codes", f"names more than {MAX_SHEET_LABELS:,} labels")
                listed = list(selection)
        pdf, pages = self.labels.render_sheet([(code, self.url(code)) for code in listed])
        return pdf, len(listed), pages

    # -- production lines -------------------------------------------------------------------

    def open_line(
        self, request_id: str, subject_id: str, product_batch_id: str, line_id: str,
        *, actor: Actor = None,
    ) -> LineSession:
        request_id = check_request_id(request_id, "open.request_id")
        batch = check_batch_id(product_batch_id, "open.product_batch_id", required=True)
        line_id = line_id.strip()
        if not line_id or len(line_id) > 64 or not line_id.isprintable():
            raise InvalidArgument.of("open.line_id", "must be 1-64 printable characters")
        subject = self._subject(subject_id, "open.subject_id")
        access.check_issue(actor, subject.subject_id, subject.division_code)
        with self.uow_factory() as uow:
            if uow.requests.find(request_id) is not None:
                raise FailedPrecondition(
                    "this production-line session was already opened; open a new one",
                    reason="LINE_SESSION_REUSED",
                )
            issuance = Issuance(
                issuance_id=self.issuance_ids(), subject_id=subject.subject_id,
                subject_division=subject.division_code, province=subject.province,
                mode=IssueMode.PRODUCTION_LINE, quantity=0, product_batch_id=batch,
                printer_subject_id="", line_id=line_id, created_at=self.clock(),
                created_by=actor.account_id if actor else "",
            )
            uow.requests.record(request_id, RequestRecord(
                "line", fingerprint("line", subject.subject_id, batch, line_id),
                str(issuance.issuance_id)))
            uow.codes.add_issuance(issuance)
            uow.commit()
        return LineSession(self, issuance, actor)

    def close_line(self, issuance_id: int, reason: str = LINE_VOID_REASON) -> int:
        """Voids the codes of a line session that were never acknowledged and marks the
        session closed; the number voided. Safe to repeat."""
        with self.uow_factory() as uow:
            issuance = uow.codes.get_issuance(issuance_id)
            if issuance is None or issuance.mode is not IssueMode.PRODUCTION_LINE:
                return 0
            unacknowledged = uow.codes.codes_in_state(issuance_id, frozenset({CodeState.ISSUED}))
            voided = 0
            if unacknowledged:
                voided = uow.codes.apply(
                    unacknowledged,
                    Move(frozenset({CodeState.ISSUED}), CodeState.VOID, reason=reason),
                    self.clock(),
                )
                for event in self._events(uow, unacknowledged, [issuance], [
                        ("codes_voided", {"voided": voided, "reason": reason})]):
                    uow.publish(event)
            uow.codes.close_line(issuance_id, self.clock())
            uow.commit()
        return voided

    def sweep_abandoned_lines(self, idle_for: timedelta = LINE_ABANDONED_AFTER) -> int:
        """Closes line sessions whose stream went silent without closing (e.g. the server
        that held it was killed): their unacknowledged codes are voided. Codes voided."""
        with self.reader_factory() as uow:
            stale = uow.codes.open_lines(idle_since=self.clock() - idle_for)
        return sum(self.close_line(ident) for ident in stale)


@dataclass
class LineSession:
    """One production line's stream: codes handed out, acknowledged, and at the end the
    unacknowledged ones voided (their labels may exist, so they are never handed out again)."""

    service: CodingService
    issuance: Issuance
    actor: Actor
    outstanding: set[str] = field(default_factory=set)
    issued: int = 0
    closed: bool = False
    # The stream's thread and grpc's termination callback may both close the session.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuance_id(self) -> int:
        return self.issuance.issuance_id

    def send(self, count: int) -> list[CodeRecord]:
        with self.lock:
            self._refuse_if_closed()
            return self._send(count)

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise FailedPrecondition("the line session has ended", reason="LINE_SESSION_CLOSED")

    def _send(self, count: int) -> list[CodeRecord]:
        check_quantity(count, MAX_LINE_REQUEST, "request.count")
        if self.issued + count > MAX_QUANTITY:
            raise FailedPrecondition(
                f"a line session hands out at most {MAX_QUANTITY:,} codes; open a new one",
                reason="LINE_SESSION_FULL",
            )
        service = self.service
        for _ in range(ISSUE_ATTEMPTS):
            try:
                with service.uow_factory() as uow:
                    first = self.issued + 1
                    generated = service.generate(self.issuance.province, count)
                    uow.codes.add_codes(self.issuance_id, first, generated, CodeState.ISSUED)
                    uow.codes.set_quantity(self.issuance_id, self.issued + count)
                    self._touch(uow)
                    for event in service._issued_events(self.issuance, generated, first):
                        uow.publish(event)
                    uow.commit()
            except DuplicateCode:
                continue
            self.issued += count
            self.outstanding.update(generated)
            return [service._record(self.issuance, code, serial)
                    for serial, code in enumerate(generated, start=first)]
        raise ConcurrencyConflict("could not store new codes; ask again",
                                  reason="ISSUE_RETRIES_EXHAUSTED")

    def _touch(self, uow: UnitOfWork) -> None:
        """Records the session's activity, refusing if a sweep closed it meanwhile (a line
        silent for LINE_ABANDONED_AFTER: its unacknowledged codes are void already)."""
        if not uow.codes.touch_line(self.issuance_id, self.service.clock()):
            raise FailedPrecondition(
                "the line session was closed after a long silence and its unacknowledged "
                "codes voided; open a new session", reason="LINE_SESSION_CLOSED",
            )

    def acknowledge(self, texts: Sequence[str]) -> int:
        with self.lock:
            self._refuse_if_closed()
            return self._acknowledge(texts)

    def _acknowledge(self, texts: Sequence[str]) -> int:
        acknowledged = parse_code_list(texts, "acknowledge.codes")
        foreign = [code for code in acknowledged if code not in self.outstanding]
        if foreign:
            raise InvalidArgument.of(
                "acknowledge.codes",
                f"{len(foreign)} code(s) were not sent on this session or were already "
                f"acknowledged: {', '.join(foreign[:5])}",
            )
        service = self.service
        move = Move(frozenset({CodeState.ISSUED}), CodeState.PRINTED,
                    bound_target=CodeState.ACTIVE)
        with service.uow_factory() as uow:
            self._touch(uow)
            moved = uow.codes.apply(acknowledged, move, service.clock())
            if moved != len(acknowledged):
                raise ConcurrencyConflict("some codes changed state meanwhile",
                                          reason="CODES_CHANGED_CONCURRENTLY")
            announcements: list[tuple[str, dict[str, object]]] = [
                ("codes_printed", {"printed": moved, "activated": moved}),
                ("codes_activated", {"activated": moved,
                                     "product_batch_ids": [self.issuance.product_batch_id],
                                     "on_print": True}),
            ]
            for event in service._events(uow, acknowledged, [self.issuance], announcements):
                uow.publish(event)
            uow.commit()
        self.outstanding.difference_update(acknowledged)
        return moved

    def close(self) -> int:
        """Ends the session (normally or not); the number of codes voided."""
        with self.lock:
            if self.closed:
                return 0
            self.closed = True
            voided = self.service.close_line(self.issuance_id)
            self.outstanding.clear()
            return voided
