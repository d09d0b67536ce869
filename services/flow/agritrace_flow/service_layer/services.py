"""The flow use cases. Each command runs in one unit of work: the records, the history
entries, the idempotency record and the event announcing the operation commit together.
Calls to the coding service happen before the commit and are idempotent by an id derived
from the request id, so a retry after a failure half-way completes the operation once."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
    interval_flags,
)
from agritrace_flow.domain.products import ProductCatalog
from agritrace_flow.service_layer import access
from agritrace_flow.service_layer.access import Actor
from agritrace_flow.service_layer.ports import (
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


def new_id(prefix: str, province: str) -> str:
    """Record ids: a kind letter, the province, 13 random Crockford characters (65 bits)."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return prefix + province + "".join(secrets.choice(alphabet) for _ in range(13))


def id_for_request(prefix: str, province: str, request_id: str, scope: str) -> str:
    """The id of what a request creates when another service learns it before the commit
    (codes bound to a batch): the same on every retry, so a retry after a failure half-way
    finds and completes the same record."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    number = int.from_bytes(hashlib.sha256(f"{scope}:{request_id}".encode()).digest()[:9])
    return prefix + province + "".join(alphabet[(number >> (5 * i)) & 31] for i in range(13))


def require_batch(uow: UnitOfWork, batch_id: str, field: str = "batch_id") -> Batch:
    """The batch a request names in `field`: INVALID_ARGUMENT when missing, NOT_FOUND when
    unknown."""
    if not batch_id.strip():
        raise InvalidArgument.of(field, "is required")
    batch = uow.flow.get_batch(batch_id.strip())
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


@dataclass(frozen=True)
class Result(Generic[T]):
    value: T
    replayed: bool = False


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
        request_id = check_request_id(request_id)
        operation_print = fingerprint("batch", data)
        with self.reader_factory() as uow:
            earlier = self._replay(uow, request_id, "batch", operation_print)
            if earlier is not None:
                return Result(self._batch(uow, earlier), replayed=True)
        subject = self._subject(data.subject_id, "batch.subject_id")
        access.check_acts_for(actor, subject.subject_id, subject.division_code,
                              "create batches")
        batch = self._new_batch(data, subject, "batch", request_id)
        if batch.certificate is not None:
            with self.reader_factory() as uow:
                holder = uow.flow.batch_by_certificate(batch.certificate.certificate_id)
            if holder is not None:
                raise AlreadyExists(
                    f"certificate {batch.certificate.certificate_id} was issued with batch "
                    f"{holder.batch_id}", reason="CERTIFICATE_ALREADY_USED",
                    metadata={"field": "batch.certificate.certificate_id"})
        codes, to_bind = self._bindable_codes(data.codes, subject.subject_id, batch.batch_id)
        if to_bind:
            self.coding.bind(derived_request_id(request_id, "bind"), to_bind, batch.batch_id)
        batch = replace(batch, code_count=len(codes))
        with self.uow_factory() as uow:
            earlier = self._replay(uow, request_id, "batch", operation_print)
            if earlier is not None:
                return Result(self._batch(uow, earlier), replayed=True)
            uow.flow.add_batch(batch, codes)
            uow.flow.set_holding(batch.batch_id, subject.subject_id, batch.quantity)
            uow.requests.record(request_id, RequestRecord("batch", operation_print,
                                                          batch.batch_id))
            self._history(uow, HistoryEntry(
                batch.batch_id, self._at(batch), "CREATED", subject.subject_id, "",
                batch.batch_id, f"{batch.product_name} {batch.quantity} produced in "
                f"{batch.origin_division}"))
            uow.publish(Event(SERVICE, "batch_created", self._batch_payload(batch)))
            uow.commit()
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
    def _batch_payload(batch: Batch) -> dict[str, object]:
        return {
            "batch_id": batch.batch_id, "subject_id": batch.subject_id,
            "subject_division": batch.subject_division, "product_code": batch.product_code,
            "product_name": batch.product_name, "category": batch.category,
            "quantity": str(batch.quantity.amount), "unit": batch.quantity.unit.value,
            "production_date": batch.production_date.isoformat(),
            "origin_division": batch.origin_division,
            "certificate_id": batch.certificate.certificate_id if batch.certificate else "",
            "parent_batch_ids": list(batch.parent_batch_ids), "code_count": batch.code_count,
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
        request_id = check_request_id(request_id)
        operation_print = fingerprint("ship", data)
        with self.reader_factory() as uow:
            earlier = self._replay(uow, request_id, "ship", operation_print)
            if earlier is not None:
                found = uow.flow.get_shipment(earlier)
                assert found is not None
                return Result(found, replayed=True)
            batch = self._batch(uow, data.batch_id, "shipment.batch_id")
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
        with self.uow_factory() as uow:
            earlier = self._replay(uow, request_id, "ship", operation_print)
            if earlier is not None:
                found = uow.flow.get_shipment(earlier)
                assert found is not None
                return Result(found, replayed=True)
            held = uow.flow.holding(batch.batch_id, seller.subject_id)
            if held is None or held.amount <= 0:
                raise FailedPrecondition(
                    f"{seller.subject_id} holds nothing of batch {batch.batch_id}",
                    reason="NOT_HELD")
            if quantity.in_unit_of(held) > held.amount:
                raise FailedPrecondition(
                    f"the shipment ({quantity}) is more than {seller.subject_id} holds of the "
                    f"batch ({held})", reason="INSUFFICIENT_QUANTITY")
            uow.flow.set_holding(batch.batch_id, seller.subject_id, held.minus(quantity))
            buyer_held = uow.flow.holding(batch.batch_id, buyer.subject_id)
            uow.flow.set_holding(batch.batch_id, buyer.subject_id,
                                 buyer_held.plus(quantity) if buyer_held else quantity)
            uow.flow.add_shipment(shipment)
            uow.requests.record(request_id, RequestRecord("ship", operation_print,
                                                          shipment.shipment_id))
            cross = seller.province != buyer.province
            self._history(uow, HistoryEntry(
                batch.batch_id, ship_time, "SHIPPED", seller.subject_id, buyer.subject_id,
                shipment.shipment_id, f"{quantity} to {buyer.subject_id}"
                + (f" ({seller.province}→{buyer.province})" if cross else "")))
            uow.publish(Event(SERVICE, "batch_shipped", {
                "shipment_id": shipment.shipment_id, "batch_id": batch.batch_id,
                "seller_subject_id": seller.subject_id, "buyer_subject_id": buyer.subject_id,
                "seller_province": seller.province, "buyer_province": buyer.province,
                "cross_province": cross, "quantity": str(quantity.amount),
                "unit": quantity.unit.value, "codes": list(codes),
                "ship_time": ship_time.isoformat(),
            }))
            uow.commit()
        return Result(shipment)

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

    def _trace(self, data: TraceInput, actor: Actor) -> InternalTrace:
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
        elif data.occurred_at > self.clock():
            errors.add("occur_time", "is in the future")
        if data.activity is not None and data.activity.has_interval and data.interval_days < 0:
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
        for index, data in enumerate(items):
            try:
                checked.append((index, self._trace(data, actor)))
            except DomainError as error:
                outcomes[index] = error
        if checked:
            with self.uow_factory() as uow:
                self._store_traces(uow, checked, outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    def _store_traces(self, uow: UnitOfWork, checked: list[tuple[int, InternalTrace]],
                      outcomes: list[Result[list[str]] | DomainError | None]) -> None:
        known = uow.flow.find_traces([(t.source_province, t.source_record_id)
                                      for _, t in checked])
        batches = uow.flow.get_batches(sorted({t.batch_id for _, t in checked}
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
            uow.flow.add_traces([trace for _, trace in new])
            # Only records that can raise a flag make the batch's flags worth recomputing.
            reflag = sorted({t.batch_id for _, t in new if t.activity in FLAG_ACTIVITIES})
            for batch_id, records in uow.flow.flag_traces(reflag).items():
                batch = batches[batch_id]
                flags[batch_id] = sorted(interval_flags(records, batch.production_date))
                if tuple(flags[batch_id]) != batch.flags:
                    uow.flow.set_flags(batch_id, flags[batch_id])
            self._history(uow, *(HistoryEntry(
                trace.batch_id, trace.occurred_at, "INTERNAL_TRACE",
                batches[trace.batch_id].subject_id, "",
                f"{trace.source_province}:{trace.source_record_id}",
                trace.activity.value.lower().replace("_", " ")
                + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(trace.details.items()))})"
                   if trace.details else "")) for _, trace in new))
            touched = sorted({trace.batch_id for _, trace in new})
            uow.publish(Event(SERVICE, "internal_trace_recorded", {
                "records": [{
                    "batch_id": t.batch_id, "source_province": t.source_province,
                    "source_record_id": t.source_record_id, "activity": t.activity.value,
                    "occur_time": t.occurred_at.isoformat(),
                } for _, t in new],
                "flags": {batch_id: flags[batch_id] for batch_id in touched},
            }))
            uow.commit()
        for index, trace in new:
            outcomes[index] = Result(flags[trace.batch_id])
        for index, batch_id in replays:
            outcomes[index] = Result(flags.get(batch_id, []), replayed=True)
