"""The flow use cases. Each command runs in one unit of work: the records, the history
entries, the idempotency record and the event announcing the operation commit together.
Calls to the coding service happen before the commit and are idempotent by an id derived
from the request id, so a retry after a failure half-way completes the operation once."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Generic, TypeVar

from agritrace_flow.domain.model import (
    FLAG_ACTIVITIES,
    MAX_CODES_PER_RECORD,
    Activity,
    Batch,
    Certificate,
    CertificateBasis,
    EntryRefusal,
    InternalTrace,
    MarketEntry,
    Quantity,
    Shipment,
    Transformation,
    TransformationInput,
    TransformationKind,
    check_balance,
    flags_after,
    latest_end,
)
from agritrace_flow.domain.products import ProductCatalog
from agritrace_flow.service_layer import access
from agritrace_flow.service_layer.access import Actor
from agritrace_flow.service_layer.ports import (
    BatchFlags,
    CodeInfo,
    CodeService,
    HistoryEntry,
    SubjectDirectory,
    SubjectInfo,
    UnitOfWork,
)
from agritrace_kernel import paging
from agritrace_kernel.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ViolationCollector,
)
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import (
    RequestRecord,
    check_request_id,
    earlier_result,
    fingerprint,
)
from agritrace_kernel.registry_client import require_active_subject

SERVICE = "flow"
DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE = 100, 1000
MAX_TEXT = 500
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base 32


def _characters(number: int) -> str:
    """13 characters of the alphabet from the low 65 bits of `number`."""
    return "".join(_ALPHABET[(number >> (5 * i)) & 31] for i in range(13))


def new_id(prefix: str, province: str) -> str:
    """Record ids: a kind letter, the province, 13 random Crockford characters (65 bits,
    from one read of the system's random source)."""
    return prefix + province + _characters(int.from_bytes(secrets.token_bytes(9)))


def id_for_request(prefix: str, province: str, request_id: str, scope: str) -> str:
    """The id of what a request creates when another service learns it before the commit
    (codes bound to a batch): the same on every retry, so a retry after a failure half-way
    finds and completes the same record."""
    digest = hashlib.sha256(f"{scope}:{request_id}".encode()).digest()
    return prefix + province + _characters(int.from_bytes(digest[:9]))


def require_batch(uow: UnitOfWork, batch_id: str, field: str = "batch_id") -> Batch:
    """The batch a request names in `field`: INVALID_ARGUMENT when missing, NOT_FOUND when
    unknown."""
    return _require_batch(uow.flow.get_batch, batch_id, field)


def _require_batch(get: Callable[[str], Batch | None], batch_id: str, field: str) -> Batch:
    if not batch_id.strip():
        raise InvalidArgument.of(field, "is required")
    batch = get(batch_id.strip())
    if batch is None:
        raise NotFound(f"batch {batch_id} does not exist", reason="BATCH_NOT_FOUND",
                       metadata={"field": field})
    return batch


def derived_request_id(request_id: str, purpose: str) -> str:
    """The request id of a call to another service made on behalf of `request_id`: stable, so
    a retry repeats the call idempotently, and within the 64-character limit."""
    return "flow-" + hashlib.sha256(f"{purpose}:{request_id}".encode()).hexdigest()[:40]


def _text(value: str, field: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument.of(field, "is required")
    if len(value) > limit:
        raise InvalidArgument.of(field, f"is longer than {limit} characters")
    return value


def _mask_phone(phone: str, field: str) -> str:
    """A phone as stored and shown: mobile numbers keep their first 3 and last 4 digits,
    shorter ones only their last 2 (never the number in clear)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not phone.strip():
        return ""
    if len(digits) < 7 or len(digits) > 12:
        raise InvalidArgument.of(field, "is not a phone number")
    if len(digits) >= 11:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    return "*" * (len(digits) - 2) + digits[-2:]


# -- inputs, as the entrypoints hand them over (strings not yet checked) -----------------------


@dataclass(frozen=True)
class CertificateInput:
    certificate_id: str
    producer_name: str
    contact_phone: str
    issue_date: date | None
    commitment: str
    basis: CertificateBasis | None
    test_result: str


@dataclass(frozen=True)
class BatchInput:
    subject_id: str
    product_code: str
    product_name: str
    amount: str
    unit: str
    production_date: date | None
    origin_division: str
    certificate: CertificateInput | None
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShipmentInput:
    batch_id: str
    seller_subject_id: str
    buyer_subject_id: str
    codes: tuple[str, ...]
    amount: str
    unit: str
    ship_time: datetime | None
    transport_document: str


@dataclass(frozen=True)
class TraceInput:
    source_province: str
    source_record_id: str
    batch_id: str
    occurred_at: datetime | None
    activity: Activity | None
    details: dict[str, str]
    interval_days: int = 0
    passed: bool = True


T = TypeVar("T")
# A production record's kind as its history entry names it ("veterinary drug").
_SUMMARIES = {activity.value: activity.value.lower().replace("_", " ") for activity in Activity}


@dataclass(frozen=True)
class Result(Generic[T]):
    value: T
    replayed: bool = False


@dataclass(frozen=True)
class BatchCommand:
    """A CreateBatch of a capture message."""

    request_id: str
    data: BatchInput


@dataclass(frozen=True)
class ShipmentCommand:
    """A RecordShipment of a capture message."""

    request_id: str
    data: ShipmentInput


Command = BatchCommand | ShipmentCommand
CommandOutcome = Result[Batch] | Result[Shipment] | DomainError


@dataclass(frozen=True)
class _NewBatch:
    """A batch that passed every check before the write: what the write needs."""

    request_id: str
    operation_print: str
    batch: Batch
    codes: list[str]


@dataclass(frozen=True)
class _NewShipment:
    request_id: str
    operation_print: str
    shipment: Shipment
    seller: SubjectInfo
    buyer: SubjectInfo


class _Seen:
    """What the commands of a use case see of the store: read when first asked (or in bulk
    up front, `preload`), then as the earlier commands of the same run changed it — so
    commands handled together see exactly what they would see handled one after the other.
    Reads go to `uow`, or each to a unit of work of its own from `factory` (the single
    commands' short read-only look-ups). A RequestLog, for earlier_result."""

    def __init__(self, *, uow: UnitOfWork | None = None,
                 factory: Callable[[], UnitOfWork] | None = None) -> None:
        self._uow = uow
        self._factory = factory
        self.requests: dict[str, RequestRecord | None] = {}
        self.batches: dict[str, Batch | None] = {}
        self.certificates: dict[str, Batch | None] = {}
        self.shipments: dict[str, Shipment | None] = {}
        self.held: dict[tuple[str, str], Quantity | None] = {}
        self.stored_holdings: set[tuple[str, str]] = set()  # keys the store has a row for
        self.moved: list[tuple[str, str]] = []  # holdings changed by the run, in order

    def _read(self, read: Callable[[UnitOfWork], T]) -> T:
        if self._uow is not None:
            return read(self._uow)
        assert self._factory is not None
        with self._factory() as uow:
            return read(uow)

    # -- the request log (RequestLog) -----------------------------------------------------

    def find(self, request_id: str) -> RequestRecord | None:
        if request_id not in self.requests:
            self.requests[request_id] = self._read(lambda uow: uow.requests.find(request_id))
        return self.requests[request_id]

    def record(self, request_id: str, record: RequestRecord) -> None:
        self.requests[request_id] = record

    # -- records ------------------------------------------------------------------------------

    def batch(self, batch_id: str) -> Batch | None:
        if batch_id not in self.batches:
            self.batches[batch_id] = self._read(lambda uow: uow.flow.get_batch(batch_id))
        return self.batches[batch_id]

    def certificate_holder(self, certificate_id: str, *, drawn: bool = False) -> Batch | None:
        """The batch carrying a certificate. For an id the service just `drawn` (65 random
        bits), a run asks only its own batches: the store's unique key refuses a clash, and
        the run's commands are then handled again one by one, asking the store."""
        if drawn and self._uow is not None:
            return self.certificates.get(certificate_id)
        if certificate_id not in self.certificates:
            self.certificates[certificate_id] = self._read(
                lambda uow: uow.flow.batch_by_certificate(certificate_id))
        return self.certificates[certificate_id]

    def shipment(self, shipment_id: str) -> Shipment | None:
        if shipment_id not in self.shipments:
            self.shipments[shipment_id] = self._read(
                lambda uow: uow.flow.get_shipment(shipment_id))
        return self.shipments[shipment_id]

    def holding(self, batch_id: str, subject_id: str) -> Quantity | None:
        key = (batch_id, subject_id)
        if key not in self.held:
            self.held[key] = self._read(lambda uow: uow.flow.holding(batch_id, subject_id))
            if self.held[key] is not None:
                self.stored_holdings.add(key)
        return self.held[key]

    def hold(self, batch_id: str, subject_id: str, quantity: Quantity) -> None:
        key = (batch_id, subject_id)
        if key not in self.moved:
            self.moved.append(key)
        self.held[key] = quantity

    def created(self, batch: Batch) -> None:
        self.batches[batch.batch_id] = batch
        if batch.certificate is not None:
            self.certificates[batch.certificate.certificate_id] = batch

    # -- bulk reads -----------------------------------------------------------------------------

    def preload(self, commands: Sequence[Command]) -> None:
        """Reads what `commands` will ask about in a few bulk reads (only with `uow`)."""
        uow = self._uow
        assert uow is not None
        request_ids = sorted({c.request_id.strip() for c in commands} - {""})
        found = uow.requests.find_many(request_ids)
        self.requests.update({ident: found.get(ident) for ident in request_ids})
        earlier = {r.operation: set[str]() for r in found.values()}
        for record in found.values():
            earlier[record.operation].add(record.result_id)
        shipments = [c.data for c in commands if isinstance(c, ShipmentCommand)]
        batch_ids = sorted({s.batch_id.strip() for s in shipments} | earlier.get("batch", set()))
        batches = uow.flow.get_batches(batch_ids)
        self.batches.update({ident: batches.get(ident) for ident in batch_ids})
        shipment_ids = sorted(earlier.get("ship", set()))
        stored = uow.flow.get_shipments(shipment_ids)
        self.shipments.update({ident: stored.get(ident) for ident in shipment_ids})
        certificates = sorted({c.data.certificate.certificate_id.strip() for c in commands
                               if isinstance(c, BatchCommand) and c.data.certificate} - {""})
        holders = uow.flow.batches_by_certificate(certificates)
        self.certificates.update({ident: holders.get(ident) for ident in certificates})
        keys = sorted({(s.batch_id.strip(), subject.strip()) for s in shipments
                       for subject in (s.seller_subject_id, s.buyer_subject_id)})
        held = uow.flow.holdings(keys)
        self.held.update({key: held.get(key) for key in keys})
        self.stored_holdings.update(held)


@dataclass
class _Writes:
    """The rows and events of the commands that passed, written together."""

    batches: list[tuple[Batch, list[str]]] = field(default_factory=list)
    shipments: list[Shipment] = field(default_factory=list)
    requests: list[tuple[str, RequestRecord]] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def apply(self, uow: UnitOfWork, seen: _Seen) -> None:
        uow.flow.add_batches(self.batches)
        uow.flow.add_shipments(self.shipments)
        new: list[tuple[str, str, Quantity]] = []
        changed: list[tuple[str, str, Quantity]] = []
        for batch_id, subject_id in seen.moved:
            quantity = seen.held[(batch_id, subject_id)]
            assert quantity is not None
            stored = (batch_id, subject_id) in seen.stored_holdings
            (changed if stored else new).append((batch_id, subject_id, quantity))
        uow.flow.put_holdings(new, changed)
        uow.requests.record_many(self.requests)
        uow.flow.add_history(self.history)
        for event in self.events:
            uow.publish(event)


class FlowService:
    """Application service: the use cases, with their collaborators injected."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        subjects: SubjectDirectory,
        coding: CodeService,
        products: ProductCatalog,
        *,
        clock: Clock = utc_now,
        ids: Callable[[str, str], str] = new_id,
        reader_factory: Callable[[], UnitOfWork] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.reader_factory = reader_factory or uow_factory
        self.subjects = subjects
        self.coding = coding
        self.products = products
        self.clock = clock
        self.ids = ids

    # -- helpers ----------------------------------------------------------------------------

    def _subject(self, subject_id: str, field: str) -> SubjectInfo:
        return require_active_subject(self.subjects, subject_id, field)

    @staticmethod
    def _batch(uow: UnitOfWork, batch_id: str, field: str = "batch_id") -> Batch:
        return require_batch(uow, batch_id, field)

    def _code(self, code: str, field: str) -> CodeInfo:
        if not code.strip():
            raise InvalidArgument.of(field, "is required")
        return self.coding.lookup(code)

    @staticmethod
    def _replay(uow: UnitOfWork, request_id: str, operation: str, print_: str) -> str | None:
        return earlier_result(uow.requests, request_id, operation, print_)

    @staticmethod
    def _history(uow: UnitOfWork, *entries: HistoryEntry) -> None:
        uow.flow.add_history(entries)

    # -- batches ----------------------------------------------------------------------------

    def create_batch(self, request_id: str, data: BatchInput, *,
                     actor: Actor = None) -> Result[Batch]:
        step = self._batch_step(_Seen(factory=self.reader_factory), request_id, data, actor)
        if isinstance(step, Result):
            return step
        return self._write_alone(lambda seen, writes: self._finish_batch(seen, writes, step))

    def _write_alone(self, finish: Callable[[_Seen, _Writes], Result[T]]) -> Result[T]:
        """The write of one command in a unit of work of its own (nothing for a replay)."""
        with self.uow_factory() as uow:
            seen, writes = _Seen(uow=uow), _Writes()
            result = finish(seen, writes)
            if not result.replayed:
                writes.apply(uow, seen)
                uow.commit()
        return result

    def _batch_step(self, seen: _Seen, request_id: str, data: BatchInput,
                    actor: Actor) -> Result[Batch] | _NewBatch:
        """A CreateBatch up to its write: the earlier result of a replay, or the checked
        batch (its codes bound by the coding service already)."""
        request_id = check_request_id(request_id)
        operation_print = fingerprint("batch", data)
        earlier = earlier_result(seen, request_id, "batch", operation_print)
        if earlier is not None:
            return Result(_require_batch(seen.batch, earlier, "batch_id"), replayed=True)
        subject = self._subject(data.subject_id, "batch.subject_id")
        access.check_acts_for(actor, subject.subject_id, subject.division_code,
                              "create batches")
        batch = self._new_batch(data, subject, "batch", request_id)
        if batch.certificate is not None:
            assert data.certificate is not None
            holder = seen.certificate_holder(batch.certificate.certificate_id,
                                             drawn=not data.certificate.certificate_id.strip())
            if holder is not None:
                raise AlreadyExists(
                    f"certificate {batch.certificate.certificate_id} was issued with batch "
                    f"{holder.batch_id}", reason="CERTIFICATE_ALREADY_USED",
                    metadata={"field": "batch.certificate.certificate_id"})
        codes, to_bind = self._bindable_codes(data.codes, subject.subject_id, batch.batch_id)
        if to_bind:
            self.coding.bind(derived_request_id(request_id, "bind"), to_bind, batch.batch_id)
        return _NewBatch(request_id, operation_print, replace(batch, code_count=len(codes)),
                         codes)

    def _finish_batch(self, seen: _Seen, writes: _Writes, new: _NewBatch) -> Result[Batch]:
        earlier = earlier_result(seen, new.request_id, "batch", new.operation_print)
        if earlier is not None:
            return Result(_require_batch(seen.batch, earlier, "batch_id"), replayed=True)
        batch = new.batch
        seen.created(batch)
        seen.hold(batch.batch_id, batch.subject_id, batch.quantity)
        record = RequestRecord("batch", new.operation_print, batch.batch_id)
        seen.record(new.request_id, record)
        writes.batches.append((batch, new.codes))
        writes.requests.append((new.request_id, record))
        writes.history.append(HistoryEntry(
            batch.batch_id, self._at(batch), "CREATED", batch.subject_id, "",
            batch.batch_id, f"{batch.product_name} {batch.quantity} produced in "
            f"{batch.origin_division}"))
        writes.events.append(Event(SERVICE, "batch_created",
                                   self._batch_payload(batch, new.codes)))
        return Result(batch)

    def _at(self, batch: Batch) -> datetime:
        return batch.created_at or self.clock()

    def _new_batch(self, data: BatchInput, subject: SubjectInfo, prefix: str,
                   request_id: str) -> Batch:
        errors = ViolationCollector(prefix)
        product = None
        try:
            product = self.products.require(data.product_code, f"{prefix}.product_code")
        except InvalidArgument as error:
            errors.violations.extend(error.violations)
        quantity: Quantity | None = None
        try:
            quantity = Quantity.parse(data.amount, data.unit, f"{prefix}.quantity")
        except InvalidArgument as error:
            errors.violations.extend(error.violations)
        if data.production_date is None:
            errors.add("production_date", "is required")
        elif data.production_date > self.clock().date():
            errors.add("production_date", "is in the future")
        origin = data.origin_division.strip() or subject.division_code
        if len(origin) != 6 or not origin.isdigit():
            errors.add("origin_division", "must be a 6-digit county division code")
        if len(data.codes) > MAX_CODES_PER_RECORD:
            errors.add("codes", f"names more than {MAX_CODES_PER_RECORD:,} codes")
        certificate = self._certificate(data.certificate, errors, prefix)
        name = _text(data.product_name, f"{prefix}.product_name", limit=100)
        errors.raise_if_any()
        assert product is not None and quantity is not None and data.production_date
        return Batch(
            batch_id=id_for_request("B", origin[:2], request_id, f"{prefix}:{subject.subject_id}"),
            subject_id=subject.subject_id,
            subject_division=subject.division_code, product_code=product.code,
            product_name=name or product.name_zh, category=product.category_path,
            quantity=quantity, production_date=data.production_date, origin_division=origin,
            certificate=certificate, created_at=self.clock(),
        )

    def _certificate(self, data: CertificateInput | None, errors: ViolationCollector,
                     prefix: str) -> Certificate | None:
        if data is None:
            return None
        start = len(errors.violations)
        if not data.producer_name.strip():
            errors.add("certificate.producer_name", "is required")
        if data.issue_date is None:
            errors.add("certificate.issue_date", "is required")
        if not data.commitment.strip():
            errors.add("certificate.commitment", "is required")
        if data.basis is None:
            errors.add("certificate.basis",
                       "must be PROCESS_CONTROL, SELF_TEST or COMMISSIONED_TEST")
        if data.basis is not None and data.basis is not CertificateBasis.PROCESS_CONTROL \
                and not data.test_result.strip():
            errors.add("certificate.test_result", "is required when the basis is a test")
        try:
            phone = _mask_phone(data.contact_phone, f"{prefix}.certificate.contact_phone")
        except InvalidArgument as error:
            errors.violations.extend(error.violations)
            phone = ""
        if len(errors.violations) > start:
            return None
        assert data.issue_date is not None and data.basis is not None
        return Certificate(
            certificate_id=_text(data.certificate_id, f"{prefix}.certificate.certificate_id",
                                 limit=64) or self.ids("C", "00"),
            producer_name=_text(data.producer_name, f"{prefix}.certificate.producer_name",
                                limit=200),
            contact_phone_masked=phone, issue_date=data.issue_date,
            commitment=_text(data.commitment, f"{prefix}.certificate.commitment", limit=1000),
            basis=data.basis,
            test_result=_text(data.test_result, f"{prefix}.certificate.test_result"),
        )

    def _bindable_codes(self, codes: Sequence[str], subject_id: str,
                        batch_id: str) -> tuple[list[str], list[str]]:
        """The codes of a new batch in canonical form, and those to activate for it: printed
        codes of its subject (codes already active for this very batch, e.g. on a retry,
        need nothing)."""
        canonical: list[str] = []
        to_bind = []
        for index, code in enumerate(codes):
            info = self._code(code, f"codes[{index}]")
            if not info.exists:
                raise NotFound(f"code {code} was never issued", reason="CODE_NOT_FOUND",
                               metadata={"field": f"codes[{index}]"})
            if info.subject_id != subject_id:
                raise FailedPrecondition(f"code {code} was issued to another subject",
                                         reason="CODE_OF_ANOTHER_SUBJECT")
            canonical.append(info.code)
            if info.state == "ACTIVE" and info.product_batch_id == batch_id:
                continue
            if info.state != "PRINTED":
                raise FailedPrecondition(
                    f"code {code} is {info.state}; only printed codes can be bound to a batch",
                    reason="CODE_NOT_BINDABLE")
            to_bind.append(info.code)
        if len(set(canonical)) != len(canonical):
            raise InvalidArgument.of("codes", "names a code twice")
        return canonical, to_bind

    @staticmethod
    def _batch_payload(batch: Batch, codes: Sequence[str] = ()) -> dict[str, object]:
        """What events say about a batch: what a consumer's origin view shows (the certificate
        with its phone masked), the codes bound at creation."""
        certificate = batch.certificate
        return {
            "batch_id": batch.batch_id, "subject_id": batch.subject_id,
            "subject_division": batch.subject_division, "product_code": batch.product_code,
            "product_name": batch.product_name, "category": batch.category,
            "quantity": str(batch.quantity.amount), "unit": batch.quantity.unit.value,
            "production_date": batch.production_date.isoformat(),
            "origin_division": batch.origin_division,
            "certificate_id": batch.certificate.certificate_id if batch.certificate else "",
            "parent_batch_ids": list(batch.parent_batch_ids), "code_count": batch.code_count,
            "certificate": None if certificate is None else {
                "certificate_id": certificate.certificate_id,
                "producer_name": certificate.producer_name,
                "contact_phone_masked": certificate.contact_phone_masked,
                "issue_date": certificate.issue_date.isoformat(),
                "commitment": certificate.commitment, "basis": certificate.basis.value,
                "test_result": certificate.test_result,
            },
            "codes": list(codes),
            "created_at": batch.created_at.isoformat() if batch.created_at else "",
        }

    def get_batch(self, batch_id: str, *, actor: Actor = None) -> Batch:
        with self.reader_factory() as uow:
            batch = self._batch(uow, batch_id)
        access.check_read(actor, batch)
        return batch

    def history(self, batch_id: str, page_size: int, page_token: str, *,
                actor: Actor = None) -> tuple[list[HistoryEntry], str]:
        size = paging.page_size(page_size, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
        after: tuple[datetime, int] | None = None
        if page_token:
            when, seq, token_batch = paging.decode_token(page_token, "page_token", 3)
            if token_batch != batch_id:
                raise InvalidArgument.of("page_token", "was issued for another batch")
            after = (datetime.fromisoformat(str(when)), int(str(seq)))
        with self.reader_factory() as uow:
            batch = self._batch(uow, batch_id)
            access.check_read(actor, batch)
            page = uow.flow.history(batch.batch_id, after, size + 1)
        more = len(page) > size
        page = page[:size]
        token = paging.encode_token([page[-1].occurred_at.isoformat(), page[-1].seq,
                                     batch_id]) if more else ""
        return page, token

    # -- shipments and receipts -------------------------------------------------------------

    def record_shipment(self, request_id: str, data: ShipmentInput, *,
                        actor: Actor = None) -> Result[Shipment]:
        step = self._shipment_step(_Seen(factory=self.reader_factory), request_id, data,
                                   actor)
        if isinstance(step, Result):
            return step
        return self._write_alone(lambda seen, writes: self._finish_shipment(seen, writes, step))

    @staticmethod
    def _shipped(seen: _Seen, shipment_id: str) -> Result[Shipment]:
        found = seen.shipment(shipment_id)
        assert found is not None
        return Result(found, replayed=True)

    def _shipment_step(self, seen: _Seen, request_id: str, data: ShipmentInput,
                       actor: Actor) -> Result[Shipment] | _NewShipment:
        """A RecordShipment up to its write: the earlier result of a replay, or the checked
        shipment."""
        request_id = check_request_id(request_id)
        operation_print = fingerprint("ship", data)
        earlier = earlier_result(seen, request_id, "ship", operation_print)
        if earlier is not None:
            return self._shipped(seen, earlier)
        batch = _require_batch(seen.batch, data.batch_id, "shipment.batch_id")
        seller = self._subject(data.seller_subject_id, "shipment.seller_subject_id")
        buyer = self._subject(data.buyer_subject_id, "shipment.buyer_subject_id")
        if seller.subject_id == buyer.subject_id:
            raise InvalidArgument.of("shipment.buyer_subject_id", "is the seller itself")
        access.check_acts_for(actor, seller.subject_id, seller.division_code, "ship goods")
        quantity = Quantity.parse(data.amount, data.unit, "shipment.quantity")
        if not quantity.comparable(batch.quantity):
            raise InvalidArgument.of("shipment.quantity.unit",
                                     f"cannot be compared with the batch's {batch.quantity.unit}")
        if len(data.codes) > MAX_CODES_PER_RECORD:
            raise InvalidArgument.of("shipment.codes",
                                     f"names more than {MAX_CODES_PER_RECORD:,} codes")
        codes = self._codes_of_batch(data.codes, batch.batch_id, "shipment.codes")
        document = _text(data.transport_document, "shipment.transport_document", limit=100)
        ship_time = data.ship_time or self.clock()
        if ship_time > self.clock():
            raise InvalidArgument.of("shipment.ship_time", "is in the future")
        shipment = Shipment(self.ids("S", seller.province), batch.batch_id, seller.subject_id,
                            buyer.subject_id, tuple(codes), quantity, ship_time, document)
        return _NewShipment(request_id, operation_print, shipment, seller, buyer)

    def _finish_shipment(self, seen: _Seen, writes: _Writes,
                         new: _NewShipment) -> Result[Shipment]:
        earlier = earlier_result(seen, new.request_id, "ship", new.operation_print)
        if earlier is not None:
            return self._shipped(seen, earlier)
        shipment, seller, buyer = new.shipment, new.seller, new.buyer
        batch_id, quantity = shipment.batch_id, shipment.quantity
        held = seen.holding(batch_id, seller.subject_id)
        if held is None or held.amount <= 0:
            raise FailedPrecondition(
                f"{seller.subject_id} holds nothing of batch {batch_id}", reason="NOT_HELD")
        if quantity.in_unit_of(held) > held.amount:
            raise FailedPrecondition(
                f"the shipment ({quantity}) is more than {seller.subject_id} holds of the "
                f"batch ({held})", reason="INSUFFICIENT_QUANTITY")
        seen.hold(batch_id, seller.subject_id, held.minus(quantity))
        buyer_held = seen.holding(batch_id, buyer.subject_id)
        seen.hold(batch_id, buyer.subject_id,
                  buyer_held.plus(quantity) if buyer_held else quantity)
        seen.shipments[shipment.shipment_id] = shipment
        record = RequestRecord("ship", new.operation_print, shipment.shipment_id)
        seen.record(new.request_id, record)
        writes.shipments.append(shipment)
        writes.requests.append((new.request_id, record))
        cross = seller.province != buyer.province
        writes.history.append(HistoryEntry(
            batch_id, shipment.ship_time, "SHIPPED", seller.subject_id, buyer.subject_id,
            shipment.shipment_id, f"{quantity} to {buyer.subject_id}"
            + (f" ({seller.province}→{buyer.province})" if cross else "")))
        writes.events.append(Event(SERVICE, "batch_shipped", {
            "shipment_id": shipment.shipment_id, "batch_id": batch_id,
            "seller_subject_id": seller.subject_id, "buyer_subject_id": buyer.subject_id,
            "seller_province": seller.province, "buyer_province": buyer.province,
            "cross_province": cross, "quantity": str(quantity.amount),
            "unit": quantity.unit.value, "codes": list(shipment.codes),
            "ship_time": shipment.ship_time.isoformat(),
        }))
        return Result(shipment)

    # -- batches and shipments of a capture message, together ------------------------------

    def record_batches_and_shipments(self, commands: Sequence[Command], *,
                                     actor: Actor = None) -> list[CommandOutcome]:
        """CreateBatch and RecordShipment commands handled in order in one transaction (a
        capture message's run of them): the store is read in bulk up front and written in
        bulk at the end; each command sees what the earlier ones did, as if each were its own
        use case. One outcome per command, in order: the result (REPLAYED or new) or why it
        was refused, the same error as the command alone gives. Should the write fail
        (another request raced for one of the keys), every command is handled again on its
        own, so each gets the answer it would get alone."""
        outcomes: list[CommandOutcome] = []
        try:
            with self.uow_factory() as uow:
                seen, writes = _Seen(uow=uow), _Writes()
                seen.preload(commands)
                for command in commands:
                    try:
                        outcomes.append(self._command(seen, writes, command, actor))
                    except DomainError as error:
                        outcomes.append(error)
                if writes.requests:
                    writes.apply(uow, seen)
                    uow.commit()
        except DomainError:
            return [self._command_alone(command, actor) for command in commands]
        return outcomes

    def _command(self, seen: _Seen, writes: _Writes, command: Command,
                 actor: Actor) -> Result[Batch] | Result[Shipment]:
        if isinstance(command, BatchCommand):
            step = self._batch_step(seen, command.request_id, command.data, actor)
            return step if isinstance(step, Result) else self._finish_batch(seen, writes, step)
        shipped = self._shipment_step(seen, command.request_id, command.data, actor)
        return shipped if isinstance(shipped, Result) else \
            self._finish_shipment(seen, writes, shipped)

    def _command_alone(self, command: Command, actor: Actor) -> CommandOutcome:
        try:
            if isinstance(command, BatchCommand):
                return self.create_batch(command.request_id, command.data, actor=actor)
            return self.record_shipment(command.request_id, command.data, actor=actor)
        except DomainError as error:
            return error

    def _codes_of_batch(self, codes: Sequence[str], batch_id: str, field: str,
                        states: frozenset[str] = frozenset({"ACTIVE"})) -> list[str]:
        canonical = []
        for index, code in enumerate(codes):
            info = self._code(code, f"{field}[{index}]")
            if not info.exists or info.product_batch_id != batch_id:
                raise FailedPrecondition(f"code {code} is not a code of batch {batch_id}",
                                         reason="CODE_NOT_OF_BATCH",
                                         metadata={"field": f"{field}[{index}]"})
            if info.state not in states:
                raise FailedPrecondition(f"code {code} is {info.state}",
                                         reason="CODE_NOT_ACTIVE")
            canonical.append(info.code)
        return canonical

    def confirm_receipt(self, request_id: str, buyer_subject_id: str, code: str, *,
                        actor: Actor = None) -> Result[Shipment]:
        request_id = check_request_id(request_id)
        operation_print = fingerprint("receive", buyer_subject_id.strip(), code.strip())
        with self.reader_factory() as uow:
            earlier = self._replay(uow, request_id, "receive", operation_print)
            if earlier is not None:
                found = uow.flow.get_shipment(earlier)
                assert found is not None
                return Result(found, replayed=True)
        buyer = self._subject(buyer_subject_id, "buyer_subject_id")
        access.check_acts_for(actor, buyer.subject_id, buyer.division_code, "receive goods")
        info = self._code(code, "code")
        if not info.exists or not info.product_batch_id:
            raise NotFound(f"code {code} is not on any batch", reason="CODE_NOT_FOUND")
        with self.uow_factory() as uow:
            earlier = self._replay(uow, request_id, "receive", operation_print)
            if earlier is not None:
                found = uow.flow.get_shipment(earlier)
                assert found is not None
                return Result(found, replayed=True)
            # Shipments to this buyer that carried this code (or named no codes).
            carrying = [s for s in uow.flow.shipments_of(info.product_batch_id)
                        if s.buyer_subject_id == buyer.subject_id
                        and (not s.codes or info.code in s.codes)]
            mine = [s for s in carrying if s.received_at is None]
            if not mine:
                received = bool(carrying)
                raise FailedPrecondition(
                    "these goods were already received" if received else
                    "these goods were never shipped to you",
                    reason="ALREADY_RECEIVED" if received else "NOT_SHIPPED_TO_YOU")
            # The code's own shipment first, else the oldest open one.
            shipment = sorted(mine, key=lambda s: (info.code not in s.codes, s.ship_time))[0]
            now = self.clock()
            uow.flow.mark_received(shipment.shipment_id, now)
            uow.requests.record(request_id, RequestRecord("receive", operation_print,
                                                          shipment.shipment_id))
            self._history(uow, HistoryEntry(
                shipment.batch_id, now, "RECEIVED", buyer.subject_id,
                shipment.seller_subject_id, shipment.shipment_id,
                f"{shipment.quantity} received by scanning {info.code}"))
            uow.publish(Event(SERVICE, "batch_received", {
                "shipment_id": shipment.shipment_id, "batch_id": shipment.batch_id,
                "buyer_subject_id": buyer.subject_id,
                "seller_subject_id": shipment.seller_subject_id, "code": info.code,
                "receive_time": now.isoformat(),
            }))
            uow.commit()
        return Result(replace(shipment, received_at=now))

    # -- the market gate --------------------------------------------------------------------

    def record_market_entry(self, request_id: str, market_subject_id: str, code: str,
                            certificate_id: str, check_time: datetime | None, *,
                            actor: Actor = None) -> Result[MarketEntry]:
        request_id = check_request_id(request_id)
        if bool(code.strip()) == bool(certificate_id.strip()):
            raise InvalidArgument.of("presented", "give exactly one of code or certificate_id")
        operation_print = fingerprint("entry", market_subject_id.strip(), code.strip(),
                                      certificate_id.strip(), check_time)
        with self.reader_factory() as uow:
            earlier = self._replay(uow, request_id, "entry", operation_print)
            if earlier is not None:
                found = uow.flow.get_entry(earlier)
                assert found is not None
                return Result(found, replayed=True)
        market = self._subject(market_subject_id, "market_subject_id")
        access.check_acts_for(actor, market.subject_id, market.division_code,
                              "record market entries")
        when = check_time or self.clock()
        info = self._code(code, "code") if code.strip() else None
        with self.uow_factory() as uow:
            earlier = self._replay(uow, request_id, "entry", operation_print)
            if earlier is not None:
                found = uow.flow.get_entry(earlier)
                assert found is not None
                return Result(found, replayed=True)
            batch, refusal, reason = self._gate(uow, market.subject_id, info,
                                                certificate_id.strip())
            entry = MarketEntry(
                self.ids("E", market.province), market.subject_id, refusal is None, refusal,
                reason, batch.batch_id if batch else "", info.code if info else "",
                certificate_id.strip(), when)
            uow.flow.add_entry(entry)
            uow.requests.record(request_id, RequestRecord("entry", operation_print,
                                                          entry.entry_id))
            if batch is not None:
                self._history(uow, HistoryEntry(
                    batch.batch_id, when, "MARKET_ENTRY", market.subject_id, "",
                    entry.entry_id, ("admitted" if entry.admitted else "refused: " + reason)))
            uow.publish(Event(SERVICE, "market_entry_checked", {
                "entry_id": entry.entry_id, "market_subject_id": market.subject_id,
                "market_province": market.province, "admitted": entry.admitted,
                "refusal": refusal.value if refusal else "", "reason": reason,
                "batch_id": entry.batch_id, "code": entry.code,
                "check_time": when.isoformat(),
            }))
            uow.commit()
        return Result(entry)

    @staticmethod
    def _gate(uow: UnitOfWork, market_id: str, info: CodeInfo | None,
              certificate_id: str) -> tuple[Batch | None, EntryRefusal | None, str]:
        """The gate's decision: the batch presented, the refusal (None: admitted), why."""
        if info is not None:
            if not info.exists:
                return None, EntryRefusal.UNKNOWN_CODE, "the code was never issued"
            if info.state in ("VOID", "CONSUMED"):
                return None, EntryRefusal.VOID, f"the code is {info.state.lower()}"
            if info.state != "ACTIVE" or not info.product_batch_id:
                return None, EntryRefusal.NOT_ACTIVATED, "the code is not bound to goods"
            batch = uow.flow.get_batch(info.product_batch_id)
            if batch is None:
                return None, EntryRefusal.NO_CERTIFICATE, \
                    "the code's batch was never recorded with a certificate"
        else:
            batch = uow.flow.batch_by_certificate(certificate_id)
            if batch is None:
                return None, EntryRefusal.NO_CERTIFICATE, "no batch carries this certificate"
        if batch.certificate is None:
            return batch, EntryRefusal.NO_CERTIFICATE, \
                "the batch has no compliance certificate"
        shipments = uow.flow.shipments_of(batch.batch_id)
        if shipments and batch.subject_id != market_id and not any(
                s.buyer_subject_id == market_id for s in shipments):
            return batch, EntryRefusal.SHIPPED_TO_SOMEONE_ELSE, \
                "the goods were shipped to another buyer"
        if batch.flags:
            return batch, EntryRefusal.FLAGGED, "the batch is flagged: " + ", ".join(batch.flags)
        return batch, None, ""

    # -- transformations --------------------------------------------------------------------

    def record_transformation(
        self, request_id: str, subject_id: str, kind: TransformationKind | None,
        inputs: Sequence[tuple[str, str, str, tuple[str, ...]]], output: BatchInput,
        output_code_count: int, *, actor: Actor = None,
    ) -> Result[tuple[Batch, list[str]]]:
        """`inputs`: (batch id, amount, unit, codes) each."""
        request_id = check_request_id(request_id)
        operation_print = fingerprint("transform", subject_id.strip(), kind, inputs, output,
                                      output_code_count)
        with self.reader_factory() as uow:
            earlier = self._replay(uow, request_id, "transform", operation_print)
            if earlier is not None:
                return Result(self._transformed(uow, earlier), replayed=True)
        if kind is None:
            raise InvalidArgument.of("kind", "must be SPLIT, MERGE, REPACK or PROCESS")
        if not inputs:
            raise InvalidArgument.of("inputs", "names no input")
        if not 0 <= output_code_count <= MAX_CODES_PER_RECORD:
            raise InvalidArgument.of("output_code_count",
                                     f"must be between 0 and {MAX_CODES_PER_RECORD:,}")
        subject = self._subject(subject_id, "subject_id")
        access.check_acts_for(actor, subject.subject_id, subject.division_code,
                              "record transformations")
        with self.reader_factory() as uow:
            parsed: list[TransformationInput] = []
            for index, (batch_id, amount, unit, codes) in enumerate(inputs):
                batch = self._batch(uow, batch_id, f"inputs[{index}].batch_id")
                if any(item.batch_id == batch.batch_id for item in parsed):
                    raise InvalidArgument.of(f"inputs[{index}].batch_id",
                                             "names a batch already listed as an input")
                quantity = Quantity.parse(amount, unit, f"inputs[{index}].quantity")
                # CONSUMED too: on a retry after the derivation, coding consumed them already;
                # coding itself refuses parents that are not ACTIVE for a new derivation.
                canonical = self._codes_of_batch(codes, batch.batch_id,
                                                 f"inputs[{index}].codes",
                                                 frozenset({"ACTIVE", "CONSUMED"}))
                parsed.append(TransformationInput(batch.batch_id, quantity, tuple(canonical)))
        batch = self._new_batch(replace(output, subject_id=subject.subject_id), subject,
                                "output", request_id)
        check_balance(kind, [i.quantity for i in parsed], batch.quantity)
        parent_codes = [code for i in parsed for code in i.codes]
        if output_code_count and not parent_codes:
            raise InvalidArgument.of("inputs", "name no codes, so no codes can be derived "
                                     "for the output (set output_code_count to 0)")
        batch = replace(batch, parent_batch_ids=tuple(dict.fromkeys(i.batch_id for i in parsed)),
                        code_count=output_code_count)
        with self.uow_factory() as uow:  # holdings checked before any code is derived
            self._check_holdings(uow, subject.subject_id, parsed)
        new_codes = self.coding.derive(derived_request_id(request_id, "derive"),
                                       subject.subject_id,
                                       parent_codes, batch.batch_id, output_code_count,
                                       kind.derive_reason) if output_code_count else []
        new_codes = sorted(new_codes)  # as a replay reads them back
        transformation = Transformation(batch.batch_id, subject.subject_id, kind,
                                        tuple(parsed), batch.batch_id, tuple(new_codes),
                                        self.clock())
        with self.uow_factory() as uow:
            earlier = self._replay(uow, request_id, "transform", operation_print)
            if earlier is not None:
                return Result(self._transformed(uow, earlier), replayed=True)
            self._check_holdings(uow, subject.subject_id, parsed)
            for item in parsed:
                held = uow.flow.holding(item.batch_id, subject.subject_id)
                assert held is not None
                uow.flow.set_holding(item.batch_id, subject.subject_id,
                                     held.minus(item.quantity))
            uow.flow.add_batch(batch, new_codes)
            uow.flow.set_holding(batch.batch_id, subject.subject_id, batch.quantity)
            uow.flow.add_transformation(transformation)
            uow.requests.record(request_id, RequestRecord("transform", operation_print,
                                                          batch.batch_id))
            now = transformation.occurred_at
            self._history(uow, HistoryEntry(
                batch.batch_id, now, "TRANSFORMED_FROM", subject.subject_id, "",
                batch.batch_id, f"{kind.value} of {', '.join(batch.parent_batch_ids)}"),
                *(HistoryEntry(item.batch_id, now, "TRANSFORMED_INTO", subject.subject_id, "",
                               batch.batch_id, f"{item.quantity} went into {kind.value} "
                               f"{batch.batch_id}") for item in parsed))
            uow.publish(Event(SERVICE, "batch_transformed", {
                "transformation_id": transformation.transformation_id, "kind": kind.value,
                "subject_id": subject.subject_id,
                "inputs": [{"batch_id": i.batch_id, "quantity": str(i.quantity.amount),
                            "unit": i.quantity.unit.value, "codes": list(i.codes)}
                           for i in parsed],
                "output": self._batch_payload(batch), "output_codes": new_codes,
            }))
            uow.commit()
        return Result((batch, new_codes))

    @staticmethod
    def _check_holdings(uow: UnitOfWork, subject_id: str,
                        inputs: Sequence[TransformationInput]) -> None:
        for index, item in enumerate(inputs):
            held = uow.flow.holding(item.batch_id, subject_id)
            if held is None or item.quantity.in_unit_of(held) > held.amount:
                raise FailedPrecondition(
                    f"inputs[{index}]: {subject_id} holds {held or 'nothing'} of batch "
                    f"{item.batch_id}, less than {item.quantity}", reason="INSUFFICIENT_QUANTITY")

    def _transformed(self, uow: UnitOfWork, batch_id: str) -> tuple[Batch, list[str]]:
        return self._batch(uow, batch_id), uow.flow.batch_codes(batch_id)

    # -- internal trace ---------------------------------------------------------------------

    def record_internal_trace(self, data: TraceInput, *,
                              actor: Actor = None) -> Result[list[str]]:
        (outcome,) = self.record_internal_traces([data], actor=actor)
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def _trace(self, data: TraceInput, actor: Actor, now: datetime) -> InternalTrace:
        province = data.source_province.strip()
        errors = ViolationCollector("record")
        if len(province) != 2 or not province.isdigit():
            errors.add("source_province", "must be the two digits of a province")
        record_id = data.source_record_id.strip()
        if not record_id or len(record_id) > 64:
            errors.add("source_record_id", "must be 1-64 characters")
        if not data.batch_id.strip():
            errors.add("batch_id", "is required")
        if data.activity is None:
            errors.add("activity", "is required")
        if data.occurred_at is None:
            errors.add("occur_time", "is required")
        elif data.occurred_at > now:
            errors.add("occur_time", "is in the future")
        if data.activity is not None and data.interval_days < 0 and data.activity.has_interval:
            errors.add("activity", "an interval cannot be negative")
        errors.raise_if_any()
        assert data.activity is not None and data.occurred_at is not None
        access.check_province(actor, province)
        return InternalTrace(province, record_id, data.batch_id.strip(), data.activity,
                             data.occurred_at, dict(data.details), data.interval_days,
                             data.passed)

    def record_internal_traces(
        self, items: Sequence[TraceInput], *, actor: Actor = None,
    ) -> list[Result[list[str]] | DomainError]:
        """Production-process records, many in one transaction (bridges send thousands):
        each is idempotent by (source province, source record id), so a record sent again
        changes nothing. One outcome per record, in order: the batch's flags, or why the
        record was refused. One `internal_trace_recorded` event for the whole call."""
        outcomes: list[Result[list[str]] | DomainError | None] = [None] * len(items)
        checked: list[tuple[int, InternalTrace]] = []
        now = self.clock()
        for index, data in enumerate(items):
            try:
                checked.append((index, self._trace(data, actor, now)))
            except DomainError as error:
                outcomes[index] = error
        if checked:
            with self.uow_factory() as uow:
                self._store_traces(uow, checked, outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    @staticmethod
    def _judge_flags(uow: UnitOfWork, batches: dict[str, BatchFlags], new: list[InternalTrace],
                     flags: dict[str, list[str]]) -> None:
        """The flags of the batches `new` records were added to, judged from each batch's
        flags and end of production before them (domain.flags_after: the same as judging all
        its records again); its earlier applications are read only for the batches whose end
        of production moves."""
        by_batch: dict[str, list[InternalTrace]] = {}
        for trace in new:
            if trace.activity in FLAG_ACTIVITIES:  # the others never change a flag
                by_batch.setdefault(trace.batch_id, []).append(trace)
        moved = {batch_id: end for batch_id, records in sorted(by_batch.items())
                 if (end := latest_end(records, batches[batch_id].ended_at))
                 != batches[batch_id].ended_at and end is not None}
        applications = uow.flow.applications(moved) if moved else {}
        states: list[tuple[str, Sequence[str], datetime | None]] = []
        for batch_id, records in by_batch.items():
            batch = batches[batch_id]
            judged, ended_at = flags_after(batch.flags, batch.ended_at, records,
                                           batch.production_date, applications.get(batch_id))
            flags[batch_id] = sorted(judged)
            if tuple(flags[batch_id]) != batch.flags or ended_at != batch.ended_at:
                states.append((batch_id, flags[batch_id], ended_at))
        uow.flow.set_flag_states(states)

    def _store_traces(self, uow: UnitOfWork, checked: list[tuple[int, InternalTrace]],
                      outcomes: list[Result[list[str]] | DomainError | None]) -> None:
        known = uow.flow.find_traces([(t.source_province, t.source_record_id)
                                      for _, t in checked])
        batches = uow.flow.batch_flags(sorted({t.batch_id for _, t in checked}
                                              | {t.batch_id for t in known.values()}))
        new: list[tuple[int, InternalTrace]] = []
        replays: list[tuple[int, str]] = []
        for index, trace in checked:
            key = (trace.source_province, trace.source_record_id)
            earlier = known.get(key)
            if earlier is not None:
                if earlier != trace:
                    outcomes[index] = FailedPrecondition(
                        f"record {key[1]} of province {key[0]} was stored with other "
                        "content; a provincial record id names one record",
                        reason="SOURCE_RECORD_CONFLICT")
                else:
                    replays.append((index, earlier.batch_id))
                continue
            batch = batches.get(trace.batch_id)
            if batch is None:
                outcomes[index] = NotFound(f"batch {trace.batch_id} does not exist",
                                           reason="BATCH_NOT_FOUND",
                                           metadata={"field": "record.batch_id"})
            elif batch.province != trace.source_province:
                outcomes[index] = FailedPrecondition(
                    f"batch {batch.batch_id} comes from province {batch.province}, not "
                    f"{trace.source_province}", reason="BATCH_OF_ANOTHER_PROVINCE")
            else:
                known[key] = trace  # a repeat within the same call is a replay
                new.append((index, trace))
        flags = {batch_id: list(batch.flags) for batch_id, batch in batches.items()}
        if new:
            traces = [trace for _, trace in new]
            uow.flow.add_traces(traces)
            self._judge_flags(uow, batches, traces, flags)
            history: list[HistoryEntry] = []
            records: list[dict[str, object]] = []
            for trace in traces:  # one pass: thousands of records a message
                record_id = f"{trace.source_province}:{trace.source_record_id}"
                activity = trace.activity.value
                details = trace.details
                history.append(HistoryEntry(
                    trace.batch_id, trace.occurred_at, "INTERNAL_TRACE",
                    batches[trace.batch_id].subject_id, "", record_id,
                    _SUMMARIES[activity] + (
                        f" ({', '.join(f'{k}: {v}' for k, v in sorted(details.items()))})"
                        if details else "")))
                record: dict[str, object] = {
                    "batch_id": trace.batch_id, "source_province": trace.source_province,
                    "source_record_id": trace.source_record_id, "activity": activity,
                    "occur_time": trace.occurred_at.isoformat()}
                if activity == "INSPECTION":  # what the consumer's inspection summary shows
                    record["result"] = {"passed": trace.passed,
                                        "summary": " ".join(filter(None, (
                                            details.get("item"), details.get("result"))))}
                records.append(record)
            uow.flow.add_history(history)
            uow.publish(Event(SERVICE, "internal_trace_recorded", {
                "records": records,
                "flags": {batch_id: flags[batch_id]
                          for batch_id in sorted({trace.batch_id for trace in traces})},
            }))
            uow.commit()
        # The outcomes of a batch's records are the same (immutable) object.
        stored = {batch_id: Result(batch_flags) for batch_id, batch_flags in flags.items()}
        for index, trace in new:
            outcomes[index] = stored[trace.batch_id]
        for index, batch_id in replays:
            outcomes[index] = Result(flags.get(batch_id, []), replayed=True)
