"""A capture message's batches and shipments handled together (record_batches_and_shipments,
and the servicer's CaptureRecords that sends it the runs of them): one transaction, and for
every record exactly the outcome, rows and events it gets as its own use case."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2

from agritrace.flow.v1 import flow_pb2 as pb
from agritrace_flow.adapters.epcis import EpcisCodecAdapter
from agritrace_flow.domain.model import CertificateBasis
from agritrace_flow.domain.products import ProductCatalog
from agritrace_flow.entrypoints.grpc_servicer import FlowServicer, _time
from agritrace_flow.service_layer.interchange import Interchange
from agritrace_flow.service_layer.services import (
    BatchCommand,
    BatchInput,
    CertificateInput,
    Command,
    CommandOutcome,
    FlowService,
    Result,
    ShipmentCommand,
    ShipmentInput,
    id_for_request,
    new_id,
)
from agritrace_kernel.errors import DomainError
from agritrace_testing.fakes import FixedClock, load_beside

fakes = load_beside(__file__, "fakes.py", "agritrace_flow_unit_fakes")

COOP, MARKET, RETAILER = fakes.COOP, fakes.MARKET, fakes.RETAILER


def batch(**changes: Any) -> BatchInput:
    return replace(BatchInput(
        subject_id=COOP, product_code="010403001", product_name="寿光番茄", amount="500",
        unit="KG", production_date=fakes.PRODUCTION_DATE, origin_division="",
        certificate=CertificateInput(
            certificate_id="HG370783000001", producer_name="寿光市绿源蔬菜合作社",
            contact_phone="13812345678", issue_date=fakes.PRODUCTION_DATE,
            commitment="不使用禁限用农药兽药", basis=CertificateBasis.PROCESS_CONTROL,
            test_result="")), **changes)


def shipment(batch_id: str, **changes: Any) -> ShipmentInput:
    return replace(ShipmentInput(
        batch_id=batch_id, seller_subject_id=COOP, buyer_subject_id=MARKET, codes=(),
        amount="200", unit="KG", ship_time=None, transport_document="鲁B-12345"), **changes)


def batch_id(request_id: str, subject_id: str = COOP) -> str:
    """The id a CreateBatch of COOP's county gets (derived from its request id)."""
    return id_for_request("B", "37", request_id, f"batch:{subject_id}")


class World:
    """A flow service on fakes of its own: the same commands can be run through two worlds
    and the results compared."""

    def __init__(self) -> None:
        self.database = fakes.FakeDatabase()
        self.subjects = fakes.FakeSubjectDirectory(fakes.standard_subjects())
        self.coding = fakes.FakeCodeService(self.subjects)
        self.service = FlowService(
            lambda: fakes.FakeUnitOfWork(self.database), self.subjects, self.coding,
            ProductCatalog.bundled(), clock=FixedClock(), ids=fakes.SequentialIds(),
            reader_factory=lambda: fakes.FakeUnitOfWork(self.database, read_only=True))

    def alone(self, commands: list[Command]) -> list[CommandOutcome]:
        """Each command as its own use case, one after the other."""
        outcomes: list[CommandOutcome] = []
        for command in commands:
            try:
                if isinstance(command, BatchCommand):
                    outcomes.append(self.service.create_batch(command.request_id,
                                                              command.data))
                else:
                    outcomes.append(self.service.record_shipment(command.request_id,
                                                                 command.data))
            except DomainError as error:
                outcomes.append(error)
        return outcomes

    def stored(self) -> tuple[Any, ...]:
        t = self.database.committed
        return (t.batches, t.batch_codes, t.holdings, t.shipments, t.requests, t.history,
                [(e.name, e.payload) for e in self.database.published])


def comparable(outcome: CommandOutcome) -> Any:
    if isinstance(outcome, DomainError):
        violations = [(v.field, v.description) for v in getattr(outcome, "violations", [])]
        return type(outcome).__name__, outcome.reason, outcome.message, violations
    return outcome


def without_shipment_ids(value: Any) -> str:
    return re.sub(r"S\d{15}", "S…", repr(value))


def mixed_commands(codes: list[str]) -> list[Command]:
    """Every way a capture run's batch or shipment can go: stored, replayed (from the store
    and from earlier in the run), refused for its own content or for what an earlier
    record of the run did."""
    first, coded = batch_id("req-b1"), batch_id("req-b4")
    return [
        BatchCommand("req-b1", batch()),
        ShipmentCommand("req-s1", shipment(first)),  # a batch created earlier in the run
        ShipmentCommand("req-s2", shipment(first, amount="400")),  # 300 KG left: refused
        BatchCommand("req-b2", batch()),  # the certificate of req-b1: refused
        BatchCommand("req-b3", batch(subject_id="S37NOSUCHSUBJ1")),
        BatchCommand("req-b1", batch()),  # replay within the run
        BatchCommand("req-b1", batch(amount="600")),  # the id again, other content
        ShipmentCommand(" ", shipment(first)),
        ShipmentCommand("req-s3", shipment("B370000000000099")),
        ShipmentCommand("req-s1", shipment(first)),  # replay
        BatchCommand("req-b4", batch(certificate=None, codes=tuple(codes))),
        ShipmentCommand("req-s4", shipment(coded, codes=(codes[0],), amount="100")),
        ShipmentCommand("req-s5", shipment(first, seller_subject_id=MARKET,
                                           buyer_subject_id=RETAILER, amount="50")),
        ShipmentCommand("req-s6", shipment(first, buyer_subject_id=COOP)),
        ShipmentCommand("req-s7", shipment(first, seller_subject_id=RETAILER,
                                           buyer_subject_id=COOP, amount="60")),
    ]


@pytest.fixture
def worlds() -> tuple[World, World]:
    return World(), World()


def test_a_run_stores_what_the_commands_store_one_by_one(worlds: tuple[World, World]) -> None:
    together, alone = worlds
    commands = mixed_commands(together.coding.issue(COOP, 2))
    assert alone.coding.issue(COOP, 2) == [c for c in commands[10].data.codes]  # type: ignore[union-attr]

    outcomes = together.service.record_batches_and_shipments(commands)
    expected = alone.alone(commands)

    assert [comparable(o) for o in outcomes] == [comparable(o) for o in expected]
    assert together.stored() == alone.stored()
    assert together.coding.codes == alone.coding.codes
    assert together.database.commits == 1  # the whole run in one transaction
    kinds = [type(o).__name__ if isinstance(o, DomainError) else
             ("REPLAYED" if o.replayed else "STORED") for o in outcomes]
    assert kinds == ["STORED", "STORED", "FailedPrecondition", "AlreadyExists", "NotFound",
                     "REPLAYED", "FailedPrecondition", "InvalidArgument", "NotFound",
                     "REPLAYED", "STORED", "STORED", "STORED", "InvalidArgument",
                     "FailedPrecondition"]


def test_a_run_sent_again_replays_every_record_and_writes_nothing(
    worlds: tuple[World, World],
) -> None:
    world, _ = worlds
    commands = mixed_commands(world.coding.issue(COOP, 2))
    first = world.service.record_batches_and_shipments(commands)
    before, commits = world.stored(), world.database.commits

    again = world.service.record_batches_and_shipments(commands)

    assert world.stored() == before and world.database.commits == commits
    for earlier, now in zip(first, again, strict=True):
        if isinstance(earlier, Result):
            assert isinstance(now, Result) and now.replayed and now.value == earlier.value
    assert [type(o).__name__ for o in again if isinstance(o, DomainError)] == [
        # what was refused stays refused
        "FailedPrecondition", "AlreadyExists", "NotFound", "FailedPrecondition",
        "InvalidArgument", "NotFound", "InvalidArgument", "FailedPrecondition"]


def test_a_failed_write_hands_each_command_to_its_own_use_case(
    worlds: tuple[World, World],
) -> None:
    together, alone = worlds
    commands = mixed_commands(together.coding.issue(COOP, 2))
    alone.coding.issue(COOP, 2)
    together.database.fail_commits = 1  # the run's commit is lost

    outcomes = together.service.record_batches_and_shipments(commands)
    expected = alone.alone(commands)

    # The same, but for the shipment ids (drawn afresh when the commands are handled again).
    assert without_shipment_ids([comparable(o) for o in outcomes]) == \
        without_shipment_ids([comparable(o) for o in expected])
    assert without_shipment_ids(together.stored()) == without_shipment_ids(alone.stored())
    assert together.database.commits == alone.database.commits  # one per stored command


def test_a_run_of_only_replays_and_refusals_commits_nothing(
    worlds: tuple[World, World],
) -> None:
    world, _ = worlds
    world.service.create_batch("req-b1", batch())
    commits = world.database.commits

    outcomes = world.service.record_batches_and_shipments([
        BatchCommand("req-b1", batch()), BatchCommand("req-x", batch(amount="-1"))])

    assert isinstance(outcomes[0], Result) and outcomes[0].replayed
    assert isinstance(outcomes[1], DomainError)
    assert world.database.commits == commits


# -- the servicer: runs of batches and shipments between the other kinds ------------------------


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _message_batch(request_id: str, codes: list[str]) -> pb.CaptureRecord:
    day = fakes.PRODUCTION_DATE
    return pb.CaptureRecord(batch=pb.CreateBatchRequest(
        request_id=request_id, codes=codes, batch=pb.Batch(
            subject_id=COOP, product_code="010403001",
            quantity=pb.Quantity(amount="500", unit="KG"),
            production_date=date_pb2.Date(year=day.year, month=day.month, day=day.day))))


def _message_shipment(request_id: str, batch: str, seller: str, buyer: str,
                      codes: list[str]) -> pb.CaptureRecord:
    return pb.CaptureRecord(shipment=pb.RecordShipmentRequest(
        request_id=request_id, shipment=pb.Shipment(
            batch_id=batch, seller_subject_id=seller, buyer_subject_id=buyer, codes=codes,
            quantity=pb.Quantity(amount="100", unit="KG"))))


@pytest.fixture
def servicer(worlds: tuple[World, World]) -> FlowServicer:
    world, _ = worlds
    return FlowServicer(world.service, Interchange(
        world.service, EpcisCodecAdapter("https://trace.agri.example.cn/national")))


def test_capture_handles_the_records_in_order_around_other_kinds(
    worlds: tuple[World, World], servicer: FlowServicer,
) -> None:
    world, _ = worlds
    codes = world.coding.issue(COOP, 2)
    created = batch_id("req-b1")
    records = [
        _message_batch("req-b1", codes),
        _message_shipment("req-s1", created, COOP, MARKET, [codes[0]]),
        # A receipt is its own use case: the run before it is stored first.
        pb.CaptureRecord(receipt=pb.ConfirmReceiptRequest(
            request_id="req-r1", buyer_subject_id=MARKET, code=codes[0])),
        _message_shipment("req-s2", created, MARKET, RETAILER, []),
        pb.CaptureRecord(internal_trace=pb.RecordInternalTraceRequest(
            record=pb.InternalTraceRecord(
                source_province="37", source_record_id="SD-1", batch_id=created,
                occur_time=_stamp(datetime(2024, 4, 20, tzinfo=UTC)),
                fertiliser=pb.Fertiliser(name="有机肥")))),
        pb.CaptureRecord(),
        _message_shipment("req-s3", created, COOP, MARKET, ["NOT-A-CODE"]),
    ]
    answers = list(servicer.CaptureRecords(
        iter([pb.CaptureRecordsRequest(records=records)]), context=None))  # type: ignore[arg-type]

    results = answers[0].results
    assert [r.index for r in results] == list(range(len(records)))
    assert [r.outcome for r in results] == ["STORED"] * 5 + ["REFUSED"] * 2
    assert results[0].id == created and results[4].id == "37:SD-1"
    assert results[1].id == results[2].id  # the receipt names the shipment it received
    assert (results[5].error_code, results[5].field) == ("INVALID_ARGUMENT", "record")
    assert results[6].error_code == "INVALID_ARGUMENT"
    assert world.database.history_kinds(created) == [
        "INTERNAL_TRACE", "CREATED", "SHIPPED", "RECEIVED", "SHIPPED"]

    again = list(servicer.CaptureRecords(
        iter([pb.CaptureRecordsRequest(records=records)]), context=None))  # type: ignore[arg-type]
    assert [r.outcome for r in again[0].results] == ["REPLAYED"] * 5 + ["REFUSED"] * 2


def test_a_drawn_certificate_id_that_clashes_hands_the_run_to_the_single_use_cases(
    worlds: tuple[World, World],
) -> None:
    """A run does not ask the store about the certificate ids it draws (65 random bits): the
    store's unique key refuses a clash, and the run is handled again command by command."""
    world, _ = worlds
    undrawn = batch(certificate=replace(batch().certificate, certificate_id=""))
    first = world.service.create_batch("req-b1", undrawn).value
    assert first.certificate is not None
    world.service.ids.forced = [first.certificate.certificate_id]  # type: ignore[attr-defined]

    outcomes = world.service.record_batches_and_shipments([
        BatchCommand("req-b2", undrawn), ShipmentCommand("req-s1", shipment(first.batch_id))])

    assert [type(o).__name__ for o in outcomes] == ["Result", "Result"]
    second = outcomes[0].value  # type: ignore[union-attr]
    assert second.certificate.certificate_id != first.certificate.certificate_id
    assert world.database.commits == 3  # the first batch, then each command on its own


@pytest.mark.parametrize(("seconds", "nanos"), [
    (0, 0), (1_714_550_400, 999_999_999), (1_714_550_400, 1_500), (-86_400 * 400, 7_000),
    (253_402_300_799, 999_999_000)])
def test_a_timestamp_converts_as_protobuf_converts_it(seconds: int, nanos: int) -> None:
    stamp = Timestamp(seconds=seconds, nanos=nanos)
    converted = _time(stamp, True)
    assert converted == stamp.ToDatetime(tzinfo=UTC)
    assert converted is not None and converted.tzinfo is UTC
    assert _time(stamp, False) is None


def test_record_ids_are_a_kind_letter_the_province_and_13_random_characters() -> None:
    drawn = {new_id("S", "37") for _ in range(2000)}
    assert len(drawn) == 2000
    assert all(len(ident) == 16 and ident.startswith("S37") for ident in drawn)
    assert set("".join(ident[3:] for ident in drawn)) == set(
        "0123456789ABCDEFGHJKMNPQRSTVWXYZ")  # every character of the alphabet, and only those
    # The ids derived from a request id keep their value (stored batch ids depend on it).
    assert id_for_request("B", "37", "req-batch", "batch:S37COOP0783001") == \
        id_for_request("B", "37", "req-batch", "batch:S37COOP0783001")
    number = int.from_bytes(hashlib.sha256(b"s:r").digest()[:9])
    assert id_for_request("B", "37", "r", "s") == "B37" + "".join(
        "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(number >> (5 * i)) & 31] for i in range(13))
