"""FlowService use cases against the in-memory fakes (see conftest.py and fakes.py).

The cast (fakes.py): COOP, a vegetable cooperative in Shouguang (370783, Shandong); NEIGHBOUR,
another cooperative in the same county; MARKET, a wholesale market in Beijing (110106);
RETAILER, a supermarket in Beijing (110105). The clock stands at 2024-05-01 08:00 UTC."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agritrace_flow.domain.model import (
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
    Unit,
)
from agritrace_flow.service_layer.ports import HistoryEntry
from agritrace_flow.service_layer.services import (
    BatchInput,
    CertificateInput,
    FlowService,
    Result,
    ShipmentInput,
    TraceInput,
    derived_request_id,
    id_for_request,
)
from agritrace_kernel.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from agritrace_testing.fakes import load_beside

# The module conftest.py loaded (load_beside hands back the same one): its names are needed at
# import time, for parametrize.
fakes = load_beside(__file__, "fakes.py", "agritrace_flow_unit_fakes")

COOP, NEIGHBOUR, MARKET, RETAILER = fakes.COOP, fakes.NEIGHBOUR, fakes.MARKET, fakes.RETAILER
TOMATO = "010403001"
PRODUCED = fakes.PRODUCTION_DATE
NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
CERTIFICATE_ID = "HG370783000001"


def kg(amount: str) -> Quantity:
    return Quantity(Decimal(amount).quantize(Decimal("0.001")), Unit.KG)


def fields(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [violation.field for violation in error.value.violations]


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> list[tuple[str, str]]:
    return [(v.field, v.description) for v in error.value.violations]


def certificate(**changes: Any) -> CertificateInput:
    return replace(CertificateInput(
        certificate_id=CERTIFICATE_ID, producer_name="寿光市绿源蔬菜合作社",
        contact_phone="138-1234-5678", issue_date=PRODUCED,
        commitment="不使用禁限用农药兽药、停用兽药和非法添加物", basis=CertificateBasis.SELF_TEST,
        test_result="速测：有机磷类阴性"), **changes)


def batch_input(**changes: Any) -> BatchInput:
    return replace(BatchInput(
        subject_id=COOP, product_code=TOMATO, product_name="寿光番茄", amount="500", unit="KG",
        production_date=PRODUCED, origin_division="", certificate=certificate(), codes=()),
        **changes)


def create(service: FlowService, request_id: str = "req-batch", *, actor: Any = None,
           **changes: Any) -> Batch:
    return service.create_batch(request_id, batch_input(**changes), actor=actor).value


def coded_batch(service: FlowService, coding: Any, count: int = 3, *,
                request_id: str = "req-batch", subject_id: str = COOP,
                **changes: Any) -> tuple[Batch, list[str]]:
    """A batch whose `count` codes (printed for its subject) are bound to it."""
    codes = coding.issue(subject_id, count)
    batch = create(service, request_id, subject_id=subject_id, codes=tuple(codes), **changes)
    return batch, codes


def shipment_input(batch_id: str, **changes: Any) -> ShipmentInput:
    return replace(ShipmentInput(
        batch_id=batch_id, seller_subject_id=COOP, buyer_subject_id=MARKET, codes=(),
        amount="200", unit="KG", ship_time=None, transport_document="鲁B-12345"), **changes)


def ship(service: FlowService, batch_id: str, request_id: str = "req-ship", *,
         actor: Any = None, **changes: Any) -> Shipment:
    return service.record_shipment(request_id, shipment_input(batch_id, **changes),
                                   actor=actor).value


def trace_input(batch_id: str, **changes: Any) -> TraceInput:
    return replace(TraceInput(
        source_province="37", source_record_id="SD-0001", batch_id=batch_id,
        occurred_at=datetime(2024, 4, 27, 2, 0, tzinfo=UTC), activity=Activity.PESTICIDE,
        details={"name": "吡虫啉"}, interval_days=7), **changes)


def output_input(**changes: Any) -> BatchInput:
    return batch_input(**{"product_name": "番茄（混批）", "amount": "500", "certificate": None,
                          **changes})


def event_payload(database: Any, name: str) -> dict[str, Any]:
    (event,) = database.events_named(name)
    assert event.source == "flow"
    return dict(event.payload)


class Unchanged:
    """Snapshots the committed database and the fake coding service before a refused request,
    to prove it changed nothing: tables, published events, commits, codes, coding calls."""

    def __init__(self, database: Any, coding: Any) -> None:
        self.database = database
        self.coding = coding
        self.before = database.snapshot()
        self.published = list(database.published)
        self.commits = database.commits
        self.codes = dict(coding.codes)
        self.calls = list(coding.calls)

    def assert_unchanged(self) -> None:
        assert self.database.committed == self.before
        assert self.database.published == self.published
        assert self.database.commits == self.commits
        assert self.coding.codes == self.codes
        assert self.coding.calls == self.calls


@pytest.fixture
def unchanged(database: Any, coding: Any) -> Any:
    """Call it right before the refused request: `check = unchanged()`."""
    return lambda: Unchanged(database, coding)


# -- create_batch ------------------------------------------------------------------------------


def test_a_batch_is_stored_with_its_holding_its_history_and_one_event(
    service: FlowService, database: Any, coding: Any
) -> None:
    result = service.create_batch("req-batch", batch_input(),
                                  actor=fakes.PRINCIPALS[fakes.OPERATOR_COOP])

    batch = result.value
    assert result.replayed is False
    assert batch == Batch(
        batch_id=id_for_request("B", "37", "req-batch", f"batch:{COOP}"), subject_id=COOP,
        subject_division="370783",
        product_code=TOMATO, product_name="寿光番茄", category="PLANT/VEGETABLE/SOLANACEOUS",
        quantity=kg("500"), production_date=PRODUCED, origin_division="370783",
        certificate=Certificate(
            certificate_id=CERTIFICATE_ID, producer_name="寿光市绿源蔬菜合作社",
            contact_phone_masked="138****5678", issue_date=PRODUCED,
            commitment="不使用禁限用农药兽药、停用兽药和非法添加物",
            basis=CertificateBasis.SELF_TEST, test_result="速测：有机磷类阴性"),
        code_count=0, created_at=NOW,
    )
    assert database.committed.batches == {batch.batch_id: batch}
    assert database.committed.holdings == {(batch.batch_id, COOP): kg("500")}
    assert database.committed.history == [HistoryEntry(
        batch.batch_id, NOW, "CREATED", COOP, "", batch.batch_id,
        "寿光番茄 500 KG produced in 370783", seq=1)]
    assert database.committed.requests["req-batch"].result_id == batch.batch_id
    assert event_payload(database, "batch_created") == {
        "batch_id": batch.batch_id, "subject_id": COOP, "subject_division": "370783",
        "product_code": TOMATO, "product_name": "寿光番茄",
        "category": "PLANT/VEGETABLE/SOLANACEOUS", "quantity": "500.000", "unit": "KG",
        "production_date": "2024-04-30", "origin_division": "370783",
        "certificate_id": CERTIFICATE_ID, "parent_batch_ids": [], "code_count": 0,
        # What a consumer's origin view shows, for the query service: never the clear phone.
        "certificate": {
            "certificate_id": CERTIFICATE_ID, "producer_name": "寿光市绿源蔬菜合作社",
            "contact_phone_masked": "138****5678", "issue_date": "2024-04-30",
            "commitment": "不使用禁限用农药兽药、停用兽药和非法添加物", "basis": "SELF_TEST",
            "test_result": "速测：有机磷类阴性",
        },
        "codes": [], "created_at": NOW.isoformat(),
    }
    assert database.event_names() == ["batch_created"]
    assert database.commits == 1
    assert coding.calls == []


def test_a_batch_without_a_name_takes_the_products_and_may_name_its_origin(
    service: FlowService
) -> None:
    batch = create(service, product_name=" ", origin_division="370781", amount="1.5",
                   unit="t", certificate=None)

    assert batch.product_name == "番茄"
    assert batch.origin_division == "370781"
    assert batch.subject_division == "370783"
    assert batch.quantity == Quantity(Decimal("1.500"), Unit.T)
    assert batch.certificate is None


def test_a_certificate_without_an_id_gets_one(service: FlowService, ids: Any) -> None:
    batch = create(service, certificate=certificate(certificate_id=""))

    assert batch.certificate is not None
    assert batch.certificate.certificate_id == "C000000000000001"
    assert ids.issued == ["C000000000000001"]  # batch ids come from the request id


def test_a_certificate_missing_its_fields_is_refused_naming_each(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    codes = coding.issue(COOP, 1)
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        create(service, codes=tuple(codes), certificate=certificate(
            producer_name=" ", issue_date=None, commitment="", basis=None, test_result=""))

    assert violations(error) == [
        ("batch.certificate.producer_name", "is required"),
        ("batch.certificate.issue_date", "is required"),
        ("batch.certificate.commitment", "is required"),
        ("batch.certificate.basis", "must be PROCESS_CONTROL, SELF_TEST or COMMISSIONED_TEST"),
    ]
    check.assert_unchanged()
    assert coding.lookups == []  # nothing asked of coding before the input is valid


@pytest.mark.parametrize("basis", [CertificateBasis.SELF_TEST,
                                   CertificateBasis.COMMISSIONED_TEST])
def test_a_certificate_based_on_a_test_needs_its_result(
    service: FlowService, unchanged: Any, basis: CertificateBasis
) -> None:
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        create(service, certificate=certificate(basis=basis, test_result="  "))

    assert violations(error) == [
        ("batch.certificate.test_result", "is required when the basis is a test")]
    check.assert_unchanged()


def test_a_certificate_based_on_process_control_needs_no_test_result(
    service: FlowService
) -> None:
    batch = create(service, certificate=certificate(basis=CertificateBasis.PROCESS_CONTROL,
                                                    test_result=""))

    assert batch.certificate is not None
    assert batch.certificate.basis is CertificateBasis.PROCESS_CONTROL
    assert batch.certificate.test_result == ""


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812345678", "138****5678"),
        ("138 1234 5678", "138****5678"),
        ("0536-5212345", "053****2345"),  # a landline with its area code
        ("010-12345678", "010****5678"),
        ("", ""),
    ],
)
def test_the_contact_phone_is_stored_masked(
    service: FlowService, database: Any, phone: str, masked: str
) -> None:
    batch = create(service, certificate=certificate(contact_phone=phone))

    assert batch.certificate is not None
    assert batch.certificate.contact_phone_masked == masked
    stored = database.batch(batch.batch_id).certificate
    assert stored.contact_phone_masked == masked
    digits = "".join(ch for ch in phone if ch.isdigit())
    assert not digits or digits not in repr(database.committed)
    assert not digits or digits not in repr(database.published)


@pytest.mark.parametrize("phone", ["123456", "12345678901234"])
def test_a_contact_phone_that_is_no_phone_number_is_refused(
    service: FlowService, unchanged: Any, phone: str
) -> None:
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        create(service, certificate=certificate(contact_phone=phone))

    assert violations(error) == [("batch.certificate.contact_phone", "is not a phone number")]
    check.assert_unchanged()


# Regression (found by this test, fixed):
# _mask_phone accepts 7-digit numbers (a local landline without area code) and
# masks them with len(digits) - 7 = 0 stars: "6543210" is stored - and exported in every EPCIS
# document and event - in clear. A 7-digit number needs at least some digits hidden (or the
# minimum length raised).
def test_a_seven_digit_phone_is_not_stored_in_clear(service: FlowService) -> None:
    batch = create(service, certificate=certificate(contact_phone="6543210"))

    assert batch.certificate is not None
    assert "*" in batch.certificate.contact_phone_masked
    assert batch.certificate.contact_phone_masked != "6543210"


def test_every_problem_of_a_batch_is_reported_at_once(
    service: FlowService, unchanged: Any
) -> None:
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        create(service, product_code="010403", amount="-5", unit="KG",
               production_date=date(2024, 5, 2), origin_division="37078")

    assert violations(error) == [
        ("batch.product_code",
         "010403 is the category 茄果类 (Solanaceous vegetables), not a product; a product code "
         "has 9 digits: class, sub-class and group (2 digits each) and product (3 digits), "
         "e.g. 010403001"),
        ("batch.quantity.amount", "must be a positive number"),
        ("batch.production_date", "is in the future"),
        ("batch.origin_division", "must be a 6-digit county division code"),
    ]
    check.assert_unchanged()


def test_a_batch_needs_a_production_date(service: FlowService, unchanged: Any) -> None:
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        create(service, production_date=None)

    assert violations(error) == [("batch.production_date", "is required")]
    check.assert_unchanged()


@pytest.mark.parametrize("request_id", ["", "   ", "r" * 65])
def test_a_request_id_is_required(
    service: FlowService, unchanged: Any, request_id: str
) -> None:
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        create(service, request_id)

    assert fields(error) == ["request_id"]
    check.assert_unchanged()


def test_a_batch_of_an_unknown_subject_is_not_found(
    service: FlowService, unchanged: Any
) -> None:
    check = unchanged()

    with pytest.raises(NotFound) as error:
        create(service, subject_id="S99NOBODY")

    assert error.value.reason == "SUBJECT_NOT_FOUND"
    assert error.value.metadata == {"field": "batch.subject_id"}
    check.assert_unchanged()


def test_a_suspended_subject_records_no_batch(service: FlowService, unchanged: Any) -> None:
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        create(service, subject_id=fakes.SUSPENDED)

    assert error.value.reason == "SUBJECT_NOT_ACTIVE"
    check.assert_unchanged()


def test_an_unreachable_registry_makes_creating_unavailable(
    service: FlowService, subjects: Any, unchanged: Any
) -> None:
    subjects.unavailable = True
    check = unchanged()

    with pytest.raises(Unavailable):
        create(service)

    assert subjects.asked == [COOP]
    check.assert_unchanged()


# -- create_batch: codes -------------------------------------------------------------------------


def test_printed_codes_are_bound_to_the_new_batch_through_coding(
    service: FlowService, database: Any, coding: Any
) -> None:
    codes = coding.issue(COOP, 3)

    batch = create(service, codes=tuple(codes))

    assert coding.calls == [
        ("bind", derived_request_id("req-batch", "bind"), tuple(codes), batch.batch_id)]
    assert [coding.state_of(code) for code in codes] == ["ACTIVE"] * 3
    assert {coding.batch_of(code) for code in codes} == {batch.batch_id}
    assert batch.code_count == 3
    assert database.codes_of(batch.batch_id) == sorted(codes)
    assert event_payload(database, "batch_created")["code_count"] == 3


def test_the_bind_request_id_is_derived_from_the_request_id() -> None:
    bind = derived_request_id("req-batch", "bind")

    assert bind == derived_request_id("req-batch", "bind")
    assert bind != derived_request_id("req-batch", "derive")
    assert bind != derived_request_id("req-other", "bind")
    assert bind.startswith("flow-")
    assert len(bind) == 45


def test_codes_already_active_for_this_very_batch_are_not_bound_again(
    service: FlowService, database: Any, coding: Any, ids: Any
) -> None:
    expected = id_for_request("B", "37", "req-batch", f"batch:{COOP}")
    (active,) = coding.issue(COOP, 1, state="ACTIVE", batch_id=expected)
    (printed,) = coding.issue(COOP, 1)

    batch = create(service, codes=(active, printed))

    assert batch.batch_id == expected
    assert coding.calls == [
        ("bind", derived_request_id("req-batch", "bind"), (printed,), batch.batch_id)]
    assert batch.code_count == 2
    assert database.codes_of(batch.batch_id) == sorted([active, printed])


def test_a_batch_whose_codes_are_all_active_for_it_calls_no_bind(
    service: FlowService, coding: Any, ids: Any
) -> None:
    codes = coding.issue(COOP, 2, state="ACTIVE",
                         batch_id=id_for_request("B", "37", "req-batch", f"batch:{COOP}"))

    batch = create(service, codes=tuple(codes))

    assert batch.code_count == 2
    assert coding.calls == []


def test_codes_of_another_subject_are_refused(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    (mine,) = coding.issue(COOP, 1)
    (theirs,) = coding.issue(NEIGHBOUR, 1)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        create(service, codes=(mine, theirs))

    assert error.value.reason == "CODE_OF_ANOTHER_SUBJECT"
    check.assert_unchanged()
    assert coding.state_of(mine) == "PRINTED"


@pytest.mark.parametrize(
    ("state", "batch_id"),
    [("ISSUED", ""), ("ACTIVE", "B37OTHER0000001"), ("CONSUMED", "B37OTHER0000001"),
     ("VOID", "")],
)
def test_only_printed_codes_can_be_bound(
    service: FlowService, coding: Any, unchanged: Any, state: str, batch_id: str
) -> None:
    (code,) = coding.issue(COOP, 1, state=state, batch_id=batch_id)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        create(service, codes=(code,))

    assert error.value.reason == "CODE_NOT_BINDABLE"
    assert error.value.message == (
        f"code {code} is {state}; only printed codes can be bound to a batch")
    check.assert_unchanged()


def test_a_code_never_issued_is_not_found_naming_its_position(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    (printed,) = coding.issue(COOP, 1)
    never = fakes.make_code("37", 1, "never-issued")
    check = unchanged()

    with pytest.raises(NotFound) as error:
        create(service, codes=(printed, never))

    assert error.value.reason == "CODE_NOT_FOUND"
    assert error.value.metadata == {"field": "codes[1]"}
    check.assert_unchanged()


def test_an_empty_code_is_refused_naming_its_position(
    service: FlowService, unchanged: Any
) -> None:
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        create(service, codes=(" ",))

    assert violations(error) == [("codes[0]", "is required")]
    check.assert_unchanged()


def test_an_unreachable_coding_service_makes_creating_unavailable(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    codes = coding.issue(COOP, 1)
    coding.unavailable = True
    check = unchanged()

    with pytest.raises(Unavailable):
        create(service, codes=tuple(codes))

    check.assert_unchanged()


# Regression (found by this test, fixed):
# create_batch stores the codes as the client typed them (data.codes), not in the
# canonical form coding answers with (info.code, which it binds). A code scanned in lower case
# or with the spaces it is printed with ("37 k7mx ...") is bound in coding under its canonical
# form but stored in batch_codes (and exported in EPCIS) as typed, so it never matches the
# canonical code again. record_shipment and record_transformation do canonicalise.
def test_codes_are_stored_in_their_canonical_form(
    service: FlowService, database: Any, coding: Any
) -> None:
    codes = coding.issue(COOP, 2)
    typed = tuple(f"{code[:2]} {code[2:6].lower()} {code[6:]}" for code in codes)

    batch = create(service, codes=typed)

    assert {coding.batch_of(code) for code in codes} == {batch.batch_id}
    assert database.codes_of(batch.batch_id) == sorted(codes)


# -- create_batch: retries -----------------------------------------------------------------------


def test_a_retry_returns_the_same_batch_and_changes_nothing(
    service: FlowService, database: Any, coding: Any, subjects: Any
) -> None:
    codes = coding.issue(COOP, 2)
    first = create(service, codes=tuple(codes))
    check = Unchanged(database, coding)
    subjects.unavailable = True  # a replay needs no registry

    again = service.create_batch("req-batch", batch_input(codes=tuple(codes)))

    assert again == Result(first, replayed=True)
    check.assert_unchanged()
    assert database.event_names() == ["batch_created"]
    assert len(coding.calls_named("bind")) == 1


@pytest.mark.parametrize(
    "changes",
    [{"amount": "501"}, {"product_name": "番茄"}, {"certificate": None},
     {"production_date": date(2024, 4, 29)}],
)
def test_the_same_request_id_with_other_input_is_refused(
    service: FlowService, unchanged: Any, changes: dict[str, Any]
) -> None:
    create(service)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        create(service, **changes)

    assert error.value.reason == "REQUEST_ID_REUSED"
    check.assert_unchanged()


def test_a_request_id_used_for_a_shipment_cannot_create_a_batch(
    service: FlowService, unchanged: Any
) -> None:
    batch = create(service)
    ship(service, batch.batch_id, "req-shared")
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        create(service, "req-shared")

    assert error.value.reason == "REQUEST_ID_REUSED"
    check.assert_unchanged()


# Regression (found by this test, fixed):
# the module promises that "a retry after a failure half-way completes the
# operation once", but a batch's id is drawn at random on every attempt. When the commit fails
# after coding bound the codes (to the first attempt's batch id), the retry draws another id,
# finds the codes ACTIVE for a batch that was never stored, and refuses them
# (CODE_NOT_BINDABLE): the request can never complete and the codes are stranded on a
# phantom batch. (Had the skip let them through, coding's bind - idempotent by request id and
# fingerprinted with the batch id - would answer REQUEST_ID_REUSED.) The batch id needs to be
# derived from the request id (as derived_request_id is) so that every attempt uses the same.
def test_a_retry_after_a_commit_failed_behind_a_bind_creates_the_batch(
    service: FlowService, database: Any, coding: Any
) -> None:
    codes = coding.issue(COOP, 2)
    database.fail_commits = 1
    with pytest.raises(Unavailable):
        create(service, codes=tuple(codes))
    assert database.committed == fakes.Tables()
    assert [coding.state_of(code) for code in codes] == ["ACTIVE", "ACTIVE"]

    batch = create(service, codes=tuple(codes))

    assert database.codes_of(batch.batch_id) == sorted(codes)
    assert {coding.batch_of(code) for code in codes} == {batch.batch_id}
    assert database.event_names() == ["batch_created"]


# Regression (found by this test, fixed):
# a certificate id is unique (batches.certificate_id), but create_batch does not
# check it before binding the codes: a batch naming another batch's certificate fails only at
# the insert (AlreadyExists CONCURRENT_DUPLICATE, "a concurrent request created the same
# record; read it or retry" - misleading for a reused certificate), after coding activated its
# codes for a batch that is never stored; they are then unusable (CODE_NOT_BINDABLE) for any
# later batch. The duplicate should be refused before coding is called, with a reason of its
# own.
def test_a_certificate_already_used_by_another_batch_is_refused_before_binding(
    service: FlowService, database: Any, coding: Any
) -> None:
    create(service, "req-first")
    codes = coding.issue(COOP, 2)
    check = Unchanged(database, coding)

    with pytest.raises(DomainError) as error:
        create(service, "req-second", codes=tuple(codes))

    assert [coding.state_of(code) for code in codes] == ["PRINTED", "PRINTED"]
    assert coding.calls_named("bind") == []
    assert error.value.reason != "CONCURRENT_DUPLICATE"
    check.assert_unchanged()


# -- get_batch -----------------------------------------------------------------------------------


def test_get_batch_returns_the_stored_batch(service: FlowService) -> None:
    batch = create(service)

    assert service.get_batch(batch.batch_id) == batch
    assert service.get_batch(f" {batch.batch_id} ") == batch


def test_get_batch_of_an_unknown_batch_is_not_found(service: FlowService) -> None:
    with pytest.raises(NotFound) as error:
        service.get_batch("B370000000000099")

    assert error.value.reason == "BATCH_NOT_FOUND"
    assert error.value.metadata == {"field": "batch_id"}


# -- record_shipment -----------------------------------------------------------------------------


def test_a_shipment_moves_the_holding_and_announces_itself_once(
    service: FlowService, database: Any, coding: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    sent = datetime(2024, 5, 1, 6, 30, tzinfo=UTC)

    result = service.record_shipment("req-ship", shipment_input(
        batch.batch_id, codes=(codes[0], codes[1]), ship_time=sent),
        actor=fakes.PRINCIPALS[fakes.OPERATOR_COOP])

    shipment = result.value
    assert result.replayed is False
    assert shipment == Shipment(
        shipment_id="S370000000000001", batch_id=batch.batch_id, seller_subject_id=COOP,
        buyer_subject_id=MARKET, codes=(codes[0], codes[1]), quantity=kg("200"),
        ship_time=sent, transport_document="鲁B-12345", received_at=None)
    assert database.committed.shipments == {shipment.shipment_id: shipment}
    assert database.holding(batch.batch_id, COOP) == kg("300")
    assert database.holding(batch.batch_id, MARKET) == kg("200")
    assert database.committed.history[-1] == HistoryEntry(
        batch.batch_id, sent, "SHIPPED", COOP, MARKET, shipment.shipment_id,
        f"200 KG to {MARKET} (37→11)", seq=2)
    assert event_payload(database, "batch_shipped") == {
        "shipment_id": shipment.shipment_id, "batch_id": batch.batch_id,
        "seller_subject_id": COOP, "buyer_subject_id": MARKET, "seller_province": "37",
        "buyer_province": "11", "cross_province": True, "quantity": "200.000", "unit": "KG",
        "codes": [codes[0], codes[1]], "ship_time": "2024-05-01T06:30:00+00:00",
    }
    assert database.event_names() == ["batch_created", "batch_shipped"]
    assert database.committed.requests["req-ship"].result_id == shipment.shipment_id


def test_a_shipment_within_the_province_is_not_cross_province(
    service: FlowService, database: Any
) -> None:
    batch = create(service)

    shipment = ship(service, batch.batch_id, buyer_subject_id=NEIGHBOUR)

    assert shipment.ship_time == NOW  # no ship time: now
    payload = event_payload(database, "batch_shipped")
    assert (payload["cross_province"], payload["buyer_province"]) == (False, "37")
    assert database.committed.history[-1].summary == f"200 KG to {NEIGHBOUR}"


def test_a_shipment_in_tonnes_is_taken_from_a_holding_in_kilograms(
    service: FlowService, database: Any
) -> None:
    batch = create(service)

    ship(service, batch.batch_id, amount="0.2", unit="T")
    ship(service, batch.batch_id, "req-ship-2", amount="50", unit="KG")

    assert database.holding(batch.batch_id, COOP) == kg("250")
    assert database.holding(batch.batch_id, MARKET) == Quantity(Decimal("0.250"), Unit.T)


def test_the_whole_holding_can_be_shipped_but_not_more(
    service: FlowService, database: Any, unchanged: Any
) -> None:
    batch = create(service)
    ship(service, batch.batch_id, "req-ship-1", amount="300")
    ship(service, batch.batch_id, "req-ship-2", amount="200", buyer_subject_id=RETAILER)
    assert database.holding(batch.batch_id, COOP) == kg("0")
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        ship(service, batch.batch_id, "req-ship-3", amount="0.001")

    assert error.value.reason == "NOT_HELD"
    check.assert_unchanged()


def test_shipping_more_than_is_held_is_refused(
    service: FlowService, database: Any, unchanged: Any
) -> None:
    batch = create(service)
    ship(service, batch.batch_id, "req-ship-1", amount="400")
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        ship(service, batch.batch_id, "req-ship-2", amount="100.001")

    assert error.value.reason == "INSUFFICIENT_QUANTITY"
    assert error.value.message == (
        f"the shipment (100.001 KG) is more than {COOP} holds of the batch (100 KG)")
    check.assert_unchanged()


def test_a_subject_holding_nothing_of_the_batch_cannot_ship_it(
    service: FlowService, unchanged: Any
) -> None:
    batch = create(service)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        ship(service, batch.batch_id, seller_subject_id=RETAILER)

    assert error.value.reason == "NOT_HELD"
    check.assert_unchanged()


def test_the_buyer_ships_on_what_it_received(service: FlowService, database: Any) -> None:
    batch = create(service)
    ship(service, batch.batch_id, "req-ship-1", amount="200")

    ship(service, batch.batch_id, "req-ship-2", amount="150", seller_subject_id=MARKET,
         buyer_subject_id=RETAILER)

    assert database.holding(batch.batch_id, COOP) == kg("300")
    assert database.holding(batch.batch_id, MARKET) == kg("50")
    assert database.holding(batch.batch_id, RETAILER) == kg("150")


def test_shipped_codes_must_be_codes_of_the_batch(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    _, other_codes = coded_batch(service, coding, 1, request_id="req-other",
                                     certificate=None)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        ship(service, batch.batch_id, codes=(codes[0], other_codes[0]))

    assert error.value.reason == "CODE_NOT_OF_BATCH"
    assert error.value.metadata == {"field": "shipment.codes[1]"}
    check.assert_unchanged()


def test_a_printed_code_not_yet_bound_cannot_be_shipped(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    batch = create(service)
    (printed,) = coding.issue(COOP, 1)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        ship(service, batch.batch_id, codes=(printed,))

    assert error.value.reason == "CODE_NOT_OF_BATCH"
    check.assert_unchanged()


@pytest.mark.parametrize("state", ["CONSUMED", "VOID"])
def test_a_code_of_the_batch_that_is_no_longer_active_cannot_be_shipped(
    service: FlowService, coding: Any, unchanged: Any, state: str
) -> None:
    batch, codes = coded_batch(service, coding)
    coding.codes[codes[2]] = replace(coding.codes[codes[2]], state=state)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        ship(service, batch.batch_id, codes=(codes[2],))

    assert error.value.reason == "CODE_NOT_ACTIVE"
    assert error.value.message == f"code {codes[2]} is {state}"
    check.assert_unchanged()


def test_shipped_codes_are_stored_canonical(
    service: FlowService, database: Any, coding: Any
) -> None:
    batch, codes = coded_batch(service, coding)

    shipment = ship(service, batch.batch_id, codes=(codes[0].lower(),))

    assert shipment.codes == (codes[0],)
    assert database.committed.shipments[shipment.shipment_id].codes == (codes[0],)


def test_a_seller_cannot_ship_to_itself(service: FlowService, unchanged: Any) -> None:
    batch = create(service)
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        ship(service, batch.batch_id, buyer_subject_id=f" {COOP} ")

    assert violations(error) == [("shipment.buyer_subject_id", "is the seller itself")]
    check.assert_unchanged()


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"buyer_subject_id": "S99NOBODY"}, "shipment.buyer_subject_id"),
     ({"seller_subject_id": "S99NOBODY"}, "shipment.seller_subject_id")],
)
def test_an_unknown_party_is_not_found(
    service: FlowService, unchanged: Any, changes: dict[str, str], field: str
) -> None:
    batch = create(service)
    check = unchanged()

    with pytest.raises(NotFound) as error:
        ship(service, batch.batch_id, **changes)

    assert error.value.reason == "SUBJECT_NOT_FOUND"
    assert error.value.metadata == {"field": field}
    check.assert_unchanged()


def test_a_suspended_buyer_receives_no_shipment(service: FlowService, unchanged: Any) -> None:
    batch = create(service)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        ship(service, batch.batch_id, buyer_subject_id=fakes.SUSPENDED)

    assert error.value.reason == "SUBJECT_NOT_ACTIVE"
    assert error.value.metadata == {"field": "shipment.buyer_subject_id"}
    check.assert_unchanged()


def test_a_shipment_of_an_unknown_batch_is_not_found(
    service: FlowService, unchanged: Any
) -> None:
    check = unchanged()

    with pytest.raises(NotFound) as error:
        ship(service, "B370000000000099")

    assert error.value.reason == "BATCH_NOT_FOUND"
    assert error.value.metadata == {"field": "shipment.batch_id"}
    check.assert_unchanged()


def test_a_shipment_in_the_future_is_refused(
    service: FlowService, unchanged: Any, clock: Any
) -> None:
    batch = create(service)
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        ship(service, batch.batch_id, ship_time=clock.now + timedelta(seconds=1))

    assert violations(error) == [("shipment.ship_time", "is in the future")]
    check.assert_unchanged()


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"unit": "PIECE"}, "shipment.quantity.unit"),
     ({"amount": "0"}, "shipment.quantity.amount"),
     ({"transport_document": "x" * 101}, "shipment.transport_document")],
)
def test_a_malformed_shipment_is_refused(
    service: FlowService, unchanged: Any, changes: dict[str, str], field: str
) -> None:
    batch = create(service)
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        ship(service, batch.batch_id, **changes)

    assert fields(error) == [field]
    check.assert_unchanged()


def test_a_shipment_retry_returns_the_same_shipment_and_moves_nothing_twice(
    service: FlowService, database: Any, coding: Any
) -> None:
    batch = create(service)
    first = ship(service, batch.batch_id)
    check = Unchanged(database, coding)

    again = service.record_shipment("req-ship", shipment_input(batch.batch_id))

    assert again == Result(first, replayed=True)
    check.assert_unchanged()
    assert database.holding(batch.batch_id, COOP) == kg("300")


def test_a_shipment_request_id_reused_with_another_amount_is_refused(
    service: FlowService, unchanged: Any
) -> None:
    batch = create(service)
    ship(service, batch.batch_id)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        ship(service, batch.batch_id, amount="100")

    assert error.value.reason == "REQUEST_ID_REUSED"
    check.assert_unchanged()


# -- confirm_receipt -----------------------------------------------------------------------------


def test_scanning_a_shipped_code_confirms_the_receipt(
    service: FlowService, database: Any, coding: Any, clock: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    shipment = ship(service, batch.batch_id, codes=(codes[0], codes[1]))
    received = clock.advance(hours=5)

    result = service.confirm_receipt("req-receive", MARKET, codes[1].lower(),
                                     actor=fakes.PRINCIPALS[fakes.OPERATOR_MARKET])

    assert result == Result(replace(shipment, received_at=received))
    assert database.committed.shipments[shipment.shipment_id].received_at == received
    assert database.committed.history[-1] == HistoryEntry(
        batch.batch_id, received, "RECEIVED", MARKET, COOP, shipment.shipment_id,
        f"200 KG received by scanning {codes[1]}", seq=3)
    assert event_payload(database, "batch_received") == {
        "shipment_id": shipment.shipment_id, "batch_id": batch.batch_id,
        "buyer_subject_id": MARKET, "seller_subject_id": COOP, "code": codes[1],
        "receive_time": "2024-05-01T13:00:00+00:00",
    }
    assert database.committed.requests["req-receive"].result_id == shipment.shipment_id


def test_any_code_of_the_batch_confirms_a_shipment_that_named_no_codes(
    service: FlowService, database: Any, coding: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    shipment = ship(service, batch.batch_id)

    result = service.confirm_receipt("req-receive", MARKET, codes[2])

    assert result.value.shipment_id == shipment.shipment_id
    assert database.committed.shipments[shipment.shipment_id].received_at == NOW


def test_a_code_not_shipped_to_the_scanner_is_refused(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    ship(service, batch.batch_id, codes=(codes[0],))
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        service.confirm_receipt("req-receive", RETAILER, codes[0])

    assert error.value.reason == "NOT_SHIPPED_TO_YOU"
    check.assert_unchanged()


def test_a_code_of_the_batch_left_out_of_the_shipment_is_not_shipped_to_the_buyer(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    ship(service, batch.batch_id, codes=(codes[0],))
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        service.confirm_receipt("req-receive", MARKET, codes[1])

    assert error.value.reason == "NOT_SHIPPED_TO_YOU"
    check.assert_unchanged()


def test_goods_received_once_cannot_be_received_again(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    ship(service, batch.batch_id, codes=(codes[0],))
    service.confirm_receipt("req-receive-1", MARKET, codes[0])
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        service.confirm_receipt("req-receive-2", MARKET, codes[0])

    assert error.value.reason == "ALREADY_RECEIVED"
    check.assert_unchanged()


def test_the_codes_own_shipment_is_received_before_an_older_one_without_codes(
    service: FlowService, database: Any, coding: Any, clock: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    older = ship(service, batch.batch_id, "req-ship-1", amount="100",
                 ship_time=clock.now - timedelta(hours=2))
    own = ship(service, batch.batch_id, "req-ship-2", amount="100", codes=(codes[0],))

    result = service.confirm_receipt("req-receive", MARKET, codes[0])

    assert result.value.shipment_id == own.shipment_id
    assert database.committed.shipments[older.shipment_id].received_at is None


def test_without_a_shipment_of_its_own_the_oldest_open_one_is_received(
    service: FlowService, database: Any, coding: Any, clock: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    newer = ship(service, batch.batch_id, "req-ship-1", amount="100")
    older = ship(service, batch.batch_id, "req-ship-2", amount="100",
                 ship_time=clock.now - timedelta(hours=3))

    first = service.confirm_receipt("req-receive-1", MARKET, codes[0])
    second = service.confirm_receipt("req-receive-2", MARKET, codes[0])

    assert [first.value.shipment_id, second.value.shipment_id] == [
        older.shipment_id, newer.shipment_id]


def test_a_code_on_no_batch_cannot_be_received(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    (printed,) = coding.issue(COOP, 1)
    check = unchanged()

    with pytest.raises(NotFound) as error:
        service.confirm_receipt("req-receive", MARKET, printed)

    assert error.value.reason == "CODE_NOT_FOUND"
    check.assert_unchanged()


def test_a_receipt_retry_returns_the_same_shipment(
    service: FlowService, database: Any, coding: Any, clock: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    ship(service, batch.batch_id, codes=(codes[0],))
    first = service.confirm_receipt("req-receive", MARKET, codes[0])
    clock.advance(hours=1)
    check = Unchanged(database, coding)

    again = service.confirm_receipt("req-receive", MARKET, codes[0])

    assert again == Result(first.value, replayed=True)
    check.assert_unchanged()
    assert database.event_names().count("batch_received") == 1


def test_a_receipt_request_id_reused_for_another_code_is_refused(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    batch, codes = coded_batch(service, coding)
    ship(service, batch.batch_id, codes=(codes[0], codes[1]))
    service.confirm_receipt("req-receive", MARKET, codes[0])
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        service.confirm_receipt("req-receive", MARKET, codes[1])

    assert error.value.reason == "REQUEST_ID_REUSED"
    check.assert_unchanged()


# -- the market gate -----------------------------------------------------------------------------


def gate(service: FlowService, code: str = "", certificate_id: str = "", *,
         request_id: str = "req-gate", market: str = MARKET,
         check_time: datetime | None = None) -> MarketEntry:
    return service.record_market_entry(request_id, market, code, certificate_id,
                                       check_time).value


def shipped_to(service: FlowService, coding: Any, buyer: str, **changes: Any) -> list[str]:
    """A coded batch shipped (all of it) to `buyer`; its codes."""
    batch, codes = coded_batch(service, coding, **changes)
    ship(service, batch.batch_id, "req-ship-gate", buyer_subject_id=buyer, amount="500")
    return codes


def scenario_unknown(service: FlowService, coding: Any) -> str:
    return fakes.make_code("37", 1, "never-issued")


def scenario_printed(service: FlowService, coding: Any) -> str:
    return str(coding.issue(COOP, 1)[0])


def scenario_void(service: FlowService, coding: Any) -> str:
    codes = shipped_to(service, coding, MARKET)
    coding.codes[codes[0]] = replace(coding.codes[codes[0]], state="VOID")
    return codes[0]


def scenario_consumed(service: FlowService, coding: Any) -> str:
    codes = shipped_to(service, coding, MARKET)
    coding.codes[codes[0]] = replace(coding.codes[codes[0]], state="CONSUMED")
    return codes[0]


def scenario_without_certificate(service: FlowService, coding: Any) -> str:
    return shipped_to(service, coding, MARKET, certificate=None)[0]


def scenario_batch_unknown_to_flow(service: FlowService, coding: Any) -> str:
    return str(coding.issue(COOP, 1, state="ACTIVE", batch_id="LOT-ELSEWHERE")[0])


def scenario_shipped_elsewhere(service: FlowService, coding: Any) -> str:
    return shipped_to(service, coding, RETAILER)[0]


def scenario_flagged(service: FlowService, coding: Any) -> str:
    codes = shipped_to(service, coding, MARKET)
    batch_id = coding.batch_of(codes[0])
    service.record_internal_trace(trace_input(
        batch_id, activity=Activity.INSPECTION, interval_days=0, passed=False, details={}))
    return codes[0]


def scenario_shipped_here(service: FlowService, coding: Any) -> str:
    return shipped_to(service, coding, MARKET)[1]


def scenario_never_shipped(service: FlowService, coding: Any) -> str:
    return coded_batch(service, coding)[1][0]


def scenario_own_goods(service: FlowService, coding: Any) -> str:
    # The market sells goods it produced itself (and shipped part of elsewhere).
    codes = coding.issue(MARKET, 2)
    batch = create(service, subject_id=MARKET, codes=tuple(codes))
    ship(service, batch.batch_id, "req-ship-own", seller_subject_id=MARKET,
         buyer_subject_id=RETAILER, codes=(codes[0],))
    return codes[1]


GATE_CASES = [
    pytest.param(scenario_unknown, EntryRefusal.UNKNOWN_CODE, "the code was never issued",
                 False, id="unknown"),
    pytest.param(scenario_printed, EntryRefusal.NOT_ACTIVATED, "the code is not bound to goods",
                 False, id="printed"),
    pytest.param(scenario_void, EntryRefusal.VOID, "the code is void", False, id="void"),
    pytest.param(scenario_consumed, EntryRefusal.VOID, "the code is consumed", False,
                 id="consumed"),
    pytest.param(scenario_without_certificate, EntryRefusal.NO_CERTIFICATE,
                 "the batch has no compliance certificate", True, id="no-certificate"),
    pytest.param(scenario_batch_unknown_to_flow, EntryRefusal.NO_CERTIFICATE,
                 "the code's batch was never recorded with a certificate", False,
                 id="batch-unknown-to-flow"),
    pytest.param(scenario_shipped_elsewhere, EntryRefusal.SHIPPED_TO_SOMEONE_ELSE,
                 "the goods were shipped to another buyer", True, id="shipped-elsewhere"),
    pytest.param(scenario_flagged, EntryRefusal.FLAGGED,
                 "the batch is flagged: INSPECTION_FAILED", True, id="flagged"),
    pytest.param(scenario_shipped_here, None, "", True, id="admitted-shipped-here"),
    pytest.param(scenario_never_shipped, None, "", True, id="admitted-never-shipped"),
    pytest.param(scenario_own_goods, None, "", True, id="admitted-own-goods"),
]


@pytest.mark.parametrize(("scenario", "refusal", "reason", "batch_known"), GATE_CASES)
def test_the_gate_decides_records_the_decision_and_announces_it_once(
    service: FlowService, database: Any, coding: Any, clock: Any, scenario: Any,
    refusal: EntryRefusal | None, reason: str, batch_known: bool
) -> None:
    code = scenario(service, coding)
    batch_id = coding.batch_of(code) if code in coding.codes and batch_known else ""
    history_before = len(database.committed.history)
    events_before = len(database.published)
    checked = clock.advance(hours=1)

    entry = gate(service, code)

    assert entry == MarketEntry(
        entry_id=entry.entry_id, market_subject_id=MARKET, admitted=refusal is None,
        refusal=refusal, reason=reason, batch_id=batch_id, code=code, certificate_id="",
        check_time=checked)
    assert entry.entry_id.startswith("E11")
    assert database.committed.entries == {entry.entry_id: entry}
    assert database.published[events_before:] == database.events_named("market_entry_checked")
    assert event_payload(database, "market_entry_checked") == {
        "entry_id": entry.entry_id, "market_subject_id": MARKET, "market_province": "11",
        "admitted": refusal is None, "refusal": refusal.value if refusal else "",
        "reason": reason, "batch_id": batch_id, "code": code,
        "check_time": "2024-05-01T09:00:00+00:00",
    }
    new_history = database.committed.history[history_before:]
    if batch_known:
        assert [(h.batch_id, h.kind, h.subject_id, h.record_id, h.summary)
                for h in new_history] == [
            (batch_id, "MARKET_ENTRY", MARKET, entry.entry_id,
             "admitted" if refusal is None else f"refused: {reason}")]
    else:
        assert new_history == []


def test_a_certificate_presented_at_the_gate_admits_its_batch(
    service: FlowService, database: Any
) -> None:
    batch = create(service)
    ship(service, batch.batch_id, amount="500")
    checked = NOW

    entry = gate(service, certificate_id=f" {CERTIFICATE_ID} ", check_time=checked)

    assert (entry.admitted, entry.refusal, entry.batch_id, entry.code, entry.certificate_id,
            entry.check_time) == (True, None, batch.batch_id, "", CERTIFICATE_ID, checked)
    assert database.history_kinds(batch.batch_id) == ["CREATED", "SHIPPED", "MARKET_ENTRY"]


def test_an_unknown_certificate_is_refused_at_the_gate(
    service: FlowService, database: Any
) -> None:
    entry = gate(service, certificate_id="HG000000000000")

    assert (entry.admitted, entry.refusal, entry.reason, entry.batch_id) == (
        False, EntryRefusal.NO_CERTIFICATE, "no batch carries this certificate", "")
    assert database.event_names() == ["market_entry_checked"]


def test_a_certificate_of_goods_shipped_elsewhere_is_refused(service: FlowService) -> None:
    batch = create(service)
    ship(service, batch.batch_id, amount="500", buyer_subject_id=RETAILER)

    entry = gate(service, certificate_id=CERTIFICATE_ID)

    assert entry.refusal is EntryRefusal.SHIPPED_TO_SOMEONE_ELSE


@pytest.mark.parametrize(("code", "certificate_id"), [("", ""), (" ", "  "),
                                                      ("37K7MXH2TA9WP00X", CERTIFICATE_ID)])
def test_the_gate_needs_exactly_one_of_code_or_certificate(
    service: FlowService, unchanged: Any, code: str, certificate_id: str
) -> None:
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        gate(service, code, certificate_id)

    assert violations(error) == [("presented", "give exactly one of code or certificate_id")]
    check.assert_unchanged()


def test_a_gate_retry_returns_the_same_decision(
    service: FlowService, database: Any, coding: Any
) -> None:
    code = scenario_shipped_here(service, coding)
    first = gate(service, code)
    check = Unchanged(database, coding)

    again = service.record_market_entry("req-gate", MARKET, code, "", None)

    assert again == Result(first, replayed=True)
    check.assert_unchanged()


def test_a_gate_at_an_unknown_market_is_not_found(
    service: FlowService, coding: Any, unchanged: Any
) -> None:
    code = scenario_shipped_here(service, coding)
    check = unchanged()

    with pytest.raises(NotFound) as error:
        gate(service, code, market="S99NOBODY")

    assert error.value.reason == "SUBJECT_NOT_FOUND"
    assert error.value.metadata == {"field": "market_subject_id"}
    check.assert_unchanged()


# -- record_transformation -----------------------------------------------------------------------


@pytest.fixture
def two_batches(service: FlowService, coding: Any) -> tuple[Batch, list[str], Batch, list[str]]:
    """COOP's batch A (500 kg, 3 codes) and batch B (300 kg, 2 codes, no certificate)."""
    a, codes_a = coded_batch(service, coding, 3, request_id="req-batch-a")
    b, codes_b = coded_batch(service, coding, 2, request_id="req-batch-b", amount="300",
                             certificate=None)
    return a, codes_a, b, codes_b


def transform(service: FlowService, inputs: list[tuple[str, str, str, tuple[str, ...]]],
              output: BatchInput | None = None, count: int = 4, *,
              kind: TransformationKind | None = TransformationKind.MERGE,
              request_id: str = "req-merge", subject_id: str = COOP,
              actor: Any = None) -> Result[tuple[Batch, list[str]]]:
    return service.record_transformation(request_id, subject_id, kind, inputs,
                                         output or output_input(), count, actor=actor)


def test_a_merge_derives_codes_moves_holdings_and_records_the_lineage(
    service: FlowService, database: Any, coding: Any, two_batches: Any
) -> None:
    a, codes_a, b, codes_b = two_batches
    inputs = [(a.batch_id, "200", "KG", (codes_a[0], codes_a[1])),
              (b.batch_id, "300", "KG", tuple(codes_b))]

    result = transform(service, inputs)

    batch, new_codes = result.value
    assert result.replayed is False
    out = id_for_request("B", "37", "req-merge", f"output:{COOP}")
    assert coding.calls_named("derive") == [(
        "derive", derived_request_id("req-merge", "derive"), COOP,
        (codes_a[0], codes_a[1], *codes_b), out, 4, "MIX")]
    assert len(new_codes) == 4
    assert {coding.batch_of(code) for code in new_codes} == {out}
    assert [coding.state_of(code) for code in [codes_a[0], codes_a[1], *codes_b]] == [
        "CONSUMED"] * 4
    assert coding.state_of(codes_a[2]) == "ACTIVE"
    assert batch == Batch(
        batch_id=out, subject_id=COOP, subject_division="370783", product_code=TOMATO,
        product_name="番茄（混批）", category="PLANT/VEGETABLE/SOLANACEOUS",
        quantity=kg("500"), production_date=PRODUCED, origin_division="370783",
        certificate=None, parent_batch_ids=(a.batch_id, b.batch_id), code_count=4,
        created_at=NOW)
    assert database.batch(out) == batch
    assert database.codes_of(out) == sorted(new_codes)
    assert database.holding(a.batch_id, COOP) == kg("300")
    assert database.holding(b.batch_id, COOP) == kg("0")
    assert database.holding(out, COOP) == kg("500")
    assert database.committed.transformations == {out: Transformation(
        transformation_id=out, subject_id=COOP, kind=TransformationKind.MERGE,
        inputs=(TransformationInput(a.batch_id, kg("200"), (codes_a[0], codes_a[1])),
                TransformationInput(b.batch_id, kg("300"), tuple(codes_b))),
        output_batch_id=out, output_codes=tuple(new_codes), occurred_at=NOW)}
    assert database.history_kinds(out) == ["TRANSFORMED_FROM"]
    assert database.history_kinds(a.batch_id) == ["CREATED", "TRANSFORMED_INTO"]
    assert database.committed.history[-3:] == [
        HistoryEntry(out, NOW, "TRANSFORMED_FROM", COOP, "", out,
                     f"MERGE of {a.batch_id}, {b.batch_id}", seq=3),
        HistoryEntry(a.batch_id, NOW, "TRANSFORMED_INTO", COOP, "", out,
                     f"200 KG went into MERGE {out}", seq=4),
        HistoryEntry(b.batch_id, NOW, "TRANSFORMED_INTO", COOP, "", out,
                     f"300 KG went into MERGE {out}", seq=5),
    ]
    payload = event_payload(database, "batch_transformed")
    assert payload == {
        "transformation_id": out, "kind": "MERGE", "subject_id": COOP,
        "inputs": [
            {"batch_id": a.batch_id, "quantity": "200.000", "unit": "KG",
             "codes": [codes_a[0], codes_a[1]]},
            {"batch_id": b.batch_id, "quantity": "300.000", "unit": "KG",
             "codes": list(codes_b)}],
        "output": {
            "batch_id": out, "subject_id": COOP, "subject_division": "370783",
            "product_code": TOMATO, "product_name": "番茄（混批）",
            "category": "PLANT/VEGETABLE/SOLANACEOUS", "quantity": "500.000", "unit": "KG",
            "production_date": "2024-04-30", "origin_division": "370783",
            "certificate_id": "", "parent_batch_ids": [a.batch_id, b.batch_id],
            "code_count": 4, "certificate": None, "codes": [],  # its codes: output_codes
            "created_at": NOW.isoformat()},
        "output_codes": new_codes,
    }
    assert database.event_names() == ["batch_created", "batch_created", "batch_transformed"]


def test_a_transformation_without_codes_derives_none(
    service: FlowService, database: Any, coding: Any, two_batches: Any
) -> None:
    a, _, _, _ = two_batches

    batch, new_codes = transform(service, [(a.batch_id, "100", "KG", ())],
                                 output_input(amount="0.1", unit="T"), 0,
                                 kind=TransformationKind.SPLIT).value

    assert new_codes == []
    assert coding.calls_named("derive") == []
    assert batch.quantity == Quantity(Decimal("0.100"), Unit.T)
    assert database.holding(a.batch_id, COOP) == kg("400")


def test_processing_may_lose_weight(
    service: FlowService, database: Any, coding: Any, two_batches: Any
) -> None:
    a, codes_a, _, _ = two_batches

    batch, new_codes = transform(service, [(a.batch_id, "500", "KG", tuple(codes_a))],
                                 output_input(amount="350"), 1,
                                 kind=TransformationKind.PROCESS).value

    assert batch.quantity == kg("350")
    assert len(new_codes) == 1
    assert coding.calls_named("derive")[0][-1] == "PROCESS"
    assert database.holding(a.batch_id, COOP) == kg("0")


@pytest.mark.parametrize(
    ("kind", "output_amount"),
    [(TransformationKind.MERGE, "510.001"), (TransformationKind.MERGE, "489.999"),
     (TransformationKind.REPACK, "489.999"), (TransformationKind.PROCESS, "510.001")],
)
def test_an_unbalanced_transformation_is_refused_before_any_code_is_derived(
    service: FlowService, two_batches: Any, unchanged: Any, kind: TransformationKind,
    output_amount: str
) -> None:
    a, codes_a, b, _ = two_batches
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        transform(service, [(a.batch_id, "200", "KG", (codes_a[0],)),
                            (b.batch_id, "300", "KG", ())],
                  output_input(amount=output_amount), kind=kind)

    assert error.value.reason == "TRANSFORMATION_UNBALANCED"
    check.assert_unchanged()


def test_transforming_more_than_is_held_is_refused_before_any_code_is_derived(
    service: FlowService, two_batches: Any, unchanged: Any
) -> None:
    a, codes_a, b, _ = two_batches
    ship(service, b.batch_id, "req-ship-b", amount="100")
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        transform(service, [(a.batch_id, "200", "KG", (codes_a[0],)),
                            (b.batch_id, "300", "KG", ())])

    assert error.value.reason == "INSUFFICIENT_QUANTITY"
    assert error.value.message == (
        f"inputs[1]: {COOP} holds 200 KG of batch {b.batch_id}, less than 300 KG")
    check.assert_unchanged()


def test_a_subject_transforms_only_what_it_holds(
    service: FlowService, two_batches: Any, unchanged: Any
) -> None:
    a, _, _, _ = two_batches
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        transform(service, [(a.batch_id, "100", "KG", ())], output_input(amount="100"), 0,
                  kind=TransformationKind.SPLIT, subject_id=NEIGHBOUR)

    assert error.value.reason == "INSUFFICIENT_QUANTITY"
    assert "holds nothing of batch" in error.value.message
    check.assert_unchanged()


# Regression (found by this test, fixed):
# _check_holdings checks every input against the holding on its own, so the same
# batch named twice passes although together the inputs exceed what is held; the loop that
# follows then subtracts both and stores a negative holding (100 held, 2 x 60 taken: -20).
# The inputs of one batch need summing before the check (or a batch named twice refused).
def test_a_batch_named_twice_cannot_take_more_than_is_held(
    service: FlowService, database: Any, two_batches: Any, unchanged: Any
) -> None:
    _, _, b, _ = two_batches
    ship(service, b.batch_id, "req-ship-b", amount="200")  # COOP keeps 100 kg of B
    check = unchanged()

    with pytest.raises((FailedPrecondition, InvalidArgument)):
        transform(service, [(b.batch_id, "60", "KG", ()), (b.batch_id, "60", "KG", ())],
                  output_input(amount="120"), 0)

    assert database.holding(b.batch_id, COOP) == kg("100")
    check.assert_unchanged()


def test_input_codes_must_be_active_codes_of_their_batch(
    service: FlowService, two_batches: Any, unchanged: Any
) -> None:
    a, codes_a, _, codes_b = two_batches
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        transform(service, [(a.batch_id, "200", "KG", (codes_a[0], codes_b[0]))],
                  output_input(amount="200"), 1)

    assert error.value.reason == "CODE_NOT_OF_BATCH"
    assert error.value.metadata == {"field": "inputs[0].codes[1]"}
    check.assert_unchanged()


def test_derived_codes_need_parent_codes(
    service: FlowService, two_batches: Any, unchanged: Any
) -> None:
    a, _, _, _ = two_batches
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        transform(service, [(a.batch_id, "200", "KG", ())], output_input(amount="200"), 2)

    assert fields(error) == ["inputs"]
    check.assert_unchanged()


@pytest.mark.parametrize(
    ("kind", "inputs", "count", "field"),
    [(None, "one", 1, "kind"),
     (TransformationKind.MERGE, "none", 1, "inputs"),
     (TransformationKind.MERGE, "one", -1, "output_code_count"),
     (TransformationKind.MERGE, "one", 10_001, "output_code_count")],
)
def test_a_malformed_transformation_is_refused(
    service: FlowService, two_batches: Any, unchanged: Any, kind: TransformationKind | None,
    inputs: str, count: int, field: str
) -> None:
    a, codes_a, _, _ = two_batches
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        transform(service, [(a.batch_id, "200", "KG", (codes_a[0],))] if inputs == "one"
                  else [], output_input(amount="200"), count, kind=kind)

    assert fields(error) == [field]
    check.assert_unchanged()


def test_an_unknown_input_batch_is_not_found_naming_its_position(
    service: FlowService, two_batches: Any, unchanged: Any
) -> None:
    a, _, _, _ = two_batches
    check = unchanged()

    with pytest.raises(NotFound) as error:
        transform(service, [(a.batch_id, "200", "KG", ()), ("B370000000000099", "1", "KG", ())],
                  output_input(amount="201"), 0)

    assert error.value.reason == "BATCH_NOT_FOUND"
    assert error.value.metadata == {"field": "inputs[1].batch_id"}
    check.assert_unchanged()


def test_the_output_batch_is_validated_as_a_batch(
    service: FlowService, two_batches: Any, unchanged: Any
) -> None:
    a, _, _, _ = two_batches
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        transform(service, [(a.batch_id, "200", "KG", ())],
                  output_input(amount="200", product_code="999999999",
                               production_date=None), 0)

    assert fields(error) == ["output.product_code", "output.production_date"]
    check.assert_unchanged()


# Regression (found by this test, fixed):
# _certificate names its fields with a hard-coded "batch." prefix (contact_phone,
# certificate_id, producer_name, commitment, test_result), so a bad certificate on a
# transformation's output is reported on "batch.certificate.contact_phone" - a field the
# RecordTransformation request does not have - while every other output problem is named
# "output.…". The prefix of the ViolationCollector should be used.
def test_a_bad_certificate_on_the_output_is_named_on_the_output(
    service: FlowService, two_batches: Any, unchanged: Any
) -> None:
    a, _, _, _ = two_batches
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        transform(service, [(a.batch_id, "200", "KG", ())],
                  output_input(amount="200", certificate=certificate(
                      certificate_id="HG370783000777", contact_phone="123")), 0)

    assert fields(error) == ["output.certificate.contact_phone"]
    check.assert_unchanged()


def test_a_transformation_retry_replays_without_a_second_derive(
    service: FlowService, database: Any, coding: Any, two_batches: Any
) -> None:
    a, codes_a, b, codes_b = two_batches
    inputs = [(a.batch_id, "200", "KG", (codes_a[0], codes_a[1])),
              (b.batch_id, "300", "KG", tuple(codes_b))]
    first = transform(service, inputs)
    check = Unchanged(database, coding)

    again = transform(service, inputs)

    assert again.replayed is True
    assert again.value[0] == first.value[0]
    assert sorted(again.value[1]) == sorted(first.value[1])
    check.assert_unchanged()
    assert len(coding.calls_named("derive")) == 1


# The first answer and a replay list the output codes in the same order (sorted by code, as
# the coding service numbers them), so a client pairing codes with labels by position gets
# the same pairing on a retry.
def test_a_transformation_retry_lists_the_output_codes_in_the_same_order(
    service: FlowService, two_batches: Any
) -> None:
    a, codes_a, b, codes_b = two_batches
    inputs = [(a.batch_id, "200", "KG", (codes_a[0], codes_a[1])),
              (b.batch_id, "300", "KG", tuple(codes_b))]
    first = transform(service, inputs)
    assert first.value[1] == sorted(first.value[1])

    again = transform(service, inputs)

    assert again.value[1] == first.value[1]


def test_a_transformation_request_id_reused_with_other_input_is_refused(
    service: FlowService, two_batches: Any, unchanged: Any
) -> None:
    a, _, _, _ = two_batches
    transform(service, [(a.batch_id, "200", "KG", ())], output_input(amount="200"), 0)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        transform(service, [(a.batch_id, "100", "KG", ())], output_input(amount="100"), 0)

    assert error.value.reason == "REQUEST_ID_REUSED"
    check.assert_unchanged()


# Regression (found by this test, fixed):
# a transformation whose commit fails after coding derived the codes can never
# complete. The retry re-checks the input codes, which the first derive consumed, and refuses
# them (CODE_NOT_ACTIVE, "code ... is CONSUMED"); and even past that check the output batch id
# is drawn at random on each attempt, so derive would be called with the same derived request
# id but another batch id, which coding (fingerprinting the batch id) refuses as
# REQUEST_ID_REUSED. The parents stay consumed and the new codes belong to a batch that does not
# exist. The output batch id needs to follow from the request id, and codes the request's own
# derive consumed need accepting on a retry.
def test_a_retry_after_a_commit_failed_behind_a_derive_completes_the_transformation(
    service: FlowService, database: Any, coding: Any, two_batches: Any
) -> None:
    a, codes_a, b, codes_b = two_batches
    inputs = [(a.batch_id, "200", "KG", (codes_a[0], codes_a[1])),
              (b.batch_id, "300", "KG", tuple(codes_b))]
    database.fail_commits = 1
    with pytest.raises(Unavailable):
        transform(service, inputs)

    batch, new_codes = transform(service, inputs).value

    assert {coding.batch_of(code) for code in new_codes} == {batch.batch_id}
    assert database.codes_of(batch.batch_id) == sorted(new_codes)
    assert database.event_names().count("batch_transformed") == 1


# -- record_internal_trace -----------------------------------------------------------------------


def test_a_production_record_is_stored_flags_its_batch_and_is_announced_once(
    service: FlowService, database: Any
) -> None:
    batch = create(service)

    result = service.record_internal_trace(trace_input(batch.batch_id),
                                           actor=fakes.PRINCIPALS[fakes.PLATFORM_37])

    assert result == Result(["PESTICIDE_INTERVAL_NOT_PASSED"])
    sprayed = datetime(2024, 4, 27, 2, 0, tzinfo=UTC)
    assert database.committed.traces == {("37", "SD-0001"): InternalTrace(
        "37", "SD-0001", batch.batch_id, Activity.PESTICIDE, sprayed, {"name": "吡虫啉"}, 7)}
    assert database.batch(batch.batch_id).flags == ("PESTICIDE_INTERVAL_NOT_PASSED",)
    assert database.committed.history[-1] == HistoryEntry(
        batch.batch_id, sprayed, "INTERNAL_TRACE", COOP, "", "37:SD-0001",
        "pesticide (name: 吡虫啉)", seq=2)
    assert event_payload(database, "internal_trace_recorded") == {
        "flags": {batch.batch_id: ["PESTICIDE_INTERVAL_NOT_PASSED"]},
        "records": [{"batch_id": batch.batch_id, "source_province": "37",
                     "source_record_id": "SD-0001", "activity": "PESTICIDE",
                     "occur_time": "2024-04-27T02:00:00+00:00"}],
    }
    assert database.commits == 2


def test_a_later_record_judges_the_batch_again(service: FlowService, database: Any) -> None:
    batch = create(service)
    service.record_internal_trace(trace_input(batch.batch_id))

    # The harvest came before the spraying: the harvested goods were never sprayed.
    result = service.record_internal_trace(trace_input(
        batch.batch_id, source_record_id="SD-0002", activity=Activity.HARVEST,
        occurred_at=datetime(2024, 4, 26, 23, 0, tzinfo=UTC), interval_days=0, details={}))

    assert result == Result([])
    assert database.batch(batch.batch_id).flags == ()
    assert database.history_kinds(batch.batch_id) == [
        "INTERNAL_TRACE", "INTERNAL_TRACE", "CREATED"]


def test_a_failed_inspection_adds_its_flag_to_the_others(
    service: FlowService, database: Any
) -> None:
    batch = create(service)
    service.record_internal_trace(trace_input(batch.batch_id))

    result = service.record_internal_trace(trace_input(
        batch.batch_id, source_record_id="SD-0003", activity=Activity.INSPECTION,
        interval_days=0, passed=False, details={"item": "毒死蜱", "result": "超标"}))

    assert result.value == ["INSPECTION_FAILED", "PESTICIDE_INTERVAL_NOT_PASSED"]
    assert database.batch(batch.batch_id).flags == (
        "INSPECTION_FAILED", "PESTICIDE_INTERVAL_NOT_PASSED")
    # The event tells the inspection's outcome (a consumer's inspection summary shows it).
    (_, inspected) = database.events_named("internal_trace_recorded")
    assert inspected.payload["records"][0]["result"] == {"passed": False,
                                                         "summary": "毒死蜱 超标"}


def test_a_record_sent_again_changes_nothing(
    service: FlowService, database: Any, coding: Any
) -> None:
    batch = create(service)
    service.record_internal_trace(trace_input(batch.batch_id))
    check = Unchanged(database, coding)

    again = service.record_internal_trace(trace_input(f" {batch.batch_id} "))

    assert again == Result(["PESTICIDE_INTERVAL_NOT_PASSED"], replayed=True)
    check.assert_unchanged()


@pytest.mark.parametrize(
    "changes",
    [{"interval_days": 14}, {"details": {"name": "啶虫脒"}},
     {"occurred_at": datetime(2024, 4, 27, 3, 0, tzinfo=UTC)},
     {"activity": Activity.FERTILISER}],
)
def test_a_record_id_sent_again_with_other_content_is_refused(
    service: FlowService, unchanged: Any, changes: dict[str, Any]
) -> None:
    batch = create(service)
    service.record_internal_trace(trace_input(batch.batch_id))
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        service.record_internal_trace(trace_input(batch.batch_id, **changes))

    assert error.value.reason == "SOURCE_RECORD_CONFLICT"
    check.assert_unchanged()


def test_the_same_record_id_in_another_province_is_another_record(
    service: FlowService, database: Any
) -> None:
    shandong = create(service)
    beijing = create(service, "req-batch-11", subject_id=MARKET, certificate=None)
    service.record_internal_trace(trace_input(shandong.batch_id))

    result = service.record_internal_trace(trace_input(beijing.batch_id, source_province="11"))

    assert result.replayed is False
    assert sorted(database.committed.traces) == [("11", "SD-0001"), ("37", "SD-0001")]


def test_a_record_of_a_batch_of_another_province_is_refused(
    service: FlowService, unchanged: Any
) -> None:
    beijing = create(service, subject_id=MARKET, certificate=None)
    check = unchanged()

    with pytest.raises(FailedPrecondition) as error:
        service.record_internal_trace(trace_input(beijing.batch_id))

    assert error.value.reason == "BATCH_OF_ANOTHER_PROVINCE"
    assert error.value.message == (
        f"batch {beijing.batch_id} comes from province 11, not 37")
    check.assert_unchanged()


def test_a_record_of_an_unknown_batch_is_not_found(
    service: FlowService, unchanged: Any
) -> None:
    create(service)
    check = unchanged()

    with pytest.raises(NotFound) as error:
        service.record_internal_trace(trace_input("B370000000000099"))

    assert error.value.reason == "BATCH_NOT_FOUND"
    assert error.value.metadata == {"field": "record.batch_id"}
    check.assert_unchanged()


def test_a_malformed_record_reports_every_problem(
    service: FlowService, unchanged: Any, clock: Any
) -> None:
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        service.record_internal_trace(TraceInput(
            source_province="370", source_record_id="x" * 65, batch_id=" ",
            occurred_at=clock.now + timedelta(minutes=1), activity=None, details={}))

    assert violations(error) == [
        ("record.source_province", "must be the two digits of a province"),
        ("record.source_record_id", "must be 1-64 characters"),
        ("record.batch_id", "is required"),
        ("record.activity", "is required"),
        ("record.occur_time", "is in the future"),
    ]
    check.assert_unchanged()


def test_an_interval_cannot_be_negative(service: FlowService, unchanged: Any) -> None:
    batch = create(service)
    check = unchanged()

    with pytest.raises(InvalidArgument) as error:
        service.record_internal_trace(trace_input(batch.batch_id, interval_days=-1))

    assert violations(error) == [("record.activity", "an interval cannot be negative")]
    check.assert_unchanged()


def test_records_sent_together_are_stored_in_one_transaction_and_one_event(
    service: FlowService, database: Any
) -> None:
    first = create(service, "req-batch-1")
    second = create(service, "req-batch-2", certificate=None)
    commits = database.commits

    outcomes = service.record_internal_traces([
        trace_input(first.batch_id),
        trace_input(second.batch_id, source_record_id="SD-0002", activity=Activity.PLANTING,
                    interval_days=0, details={}),
        trace_input(first.batch_id),  # the same record twice: a replay
        trace_input(first.batch_id, source_record_id="SD-0003", activity=Activity.HARVEST,
                    interval_days=0, details={},
                    occurred_at=datetime(2024, 4, 28, 2, 0, tzinfo=UTC)),
        trace_input("B370000000000099", source_record_id="SD-0004"),
    ])

    assert outcomes[:4] == [
        Result(["PESTICIDE_INTERVAL_NOT_PASSED"]), Result([]),
        Result(["PESTICIDE_INTERVAL_NOT_PASSED"], replayed=True),
        Result(["PESTICIDE_INTERVAL_NOT_PASSED"])]
    assert isinstance(outcomes[4], NotFound)
    assert outcomes[4].reason == "BATCH_NOT_FOUND"
    assert database.commits == commits + 1
    (event,) = database.events_named("internal_trace_recorded")  # one for the whole call
    assert [(r["batch_id"], r["source_record_id"]) for r in event.payload["records"]] == [
        (first.batch_id, "SD-0001"), (second.batch_id, "SD-0002"),
        (first.batch_id, "SD-0003")]
    assert sorted(event.payload["flags"]) == sorted([first.batch_id, second.batch_id])


# -- history -------------------------------------------------------------------------------------


@pytest.fixture
def storied_batch(service: FlowService, coding: Any, clock: Any) -> tuple[Batch, list[str]]:
    """A batch with two production records, its creation, two shipments at the same instant
    and a receipt: 6 history entries."""
    batch, codes = coded_batch(service, coding)
    service.record_internal_trace(trace_input(batch.batch_id, interval_days=0))
    service.record_internal_trace(trace_input(
        batch.batch_id, source_record_id="SD-0002", activity=Activity.HARVEST,
        occurred_at=datetime(2024, 4, 30, 1, 0, tzinfo=UTC), interval_days=0, details={}))
    sent = clock.advance(hours=1)
    ship(service, batch.batch_id, "req-ship-1", amount="100", ship_time=sent,
         codes=(codes[0],))
    ship(service, batch.batch_id, "req-ship-2", amount="100", ship_time=sent,
         buyer_subject_id=RETAILER, codes=(codes[1],))
    clock.advance(hours=1)
    service.confirm_receipt("req-receive", MARKET, codes[0])
    return batch, codes


def test_the_history_lists_a_batch_in_time_order(
    service: FlowService, storied_batch: Any
) -> None:
    batch, _ = storied_batch

    page, token = service.history(batch.batch_id, 0, "")

    assert token == ""
    assert [(entry.kind, entry.other_subject_id) for entry in page] == [
        ("INTERNAL_TRACE", ""), ("INTERNAL_TRACE", ""), ("CREATED", ""), ("SHIPPED", MARKET),
        ("SHIPPED", RETAILER), ("RECEIVED", COOP)]
    assert [entry.occurred_at for entry in page] == sorted(entry.occurred_at for entry in page)


@pytest.mark.parametrize("size", [1, 2, 4, 5])
def test_the_history_pages_through_every_entry_once(
    service: FlowService, storied_batch: Any, size: int
) -> None:
    batch, _ = storied_batch
    everything, _ = service.history(batch.batch_id, 0, "")

    pages: list[list[HistoryEntry]] = []
    token = ""
    while True:
        page, token = service.history(batch.batch_id, size, token)
        pages.append(page)
        if not token:
            break

    assert [entry for page in pages for entry in page] == everything
    assert [len(page) for page in pages] == [
        min(size, 6 - start) for start in range(0, 6, size)]


def test_a_history_token_of_another_batch_is_refused(
    service: FlowService, storied_batch: Any
) -> None:
    batch, _ = storied_batch
    other = create(service, "req-batch-other", certificate=None)
    _, token = service.history(batch.batch_id, 1, "")

    with pytest.raises(InvalidArgument) as error:
        service.history(other.batch_id, 1, token)

    assert violations(error) == [("page_token", "was issued for another batch")]


@pytest.mark.parametrize(("size", "token", "field"),
                         [(-1, "", "page_size"), (10, "not-a-token", "page_token")])
def test_a_bad_history_page_request_is_refused(
    service: FlowService, storied_batch: Any, size: int, token: str, field: str
) -> None:
    batch, _ = storied_batch

    with pytest.raises(InvalidArgument) as error:
        service.history(batch.batch_id, size, token)

    assert fields(error) == [field]


def test_the_history_of_an_unknown_batch_is_not_found(service: FlowService) -> None:
    with pytest.raises(NotFound) as error:
        service.history("B370000000000099", 10, "")

    assert error.value.reason == "BATCH_NOT_FOUND"
