"""Unit tests for agritrace_flow.adapters.epcis: export of a realistic chain against the
official GS1 EPCIS 2.0 JSON schema, import of GS1's own example documents, and the refusals."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import random
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from agritrace_coding.domain.codes import check_character, has_valid_check, resolver_url
from agritrace_flow.adapters import epcis
from agritrace_flow.adapters.epcis import (
    EpcisRecords,
    EventKind,
    ImportedEvent,
    RefusedEvent,
    build_document,
    cbv_short_name,
    event_hash,
    imported_to_event,
    parse_document,
    record_event_id,
    validate,
)
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

EXAMPLES = Path(__file__).resolve().parent / "epcis_examples"
BASE = "https://trace.agritrace.example.cn"
CREATED = datetime(2025, 6, 10, 4, 0, tzinfo=UTC)

FARM = "S7K2M4P6Q8R1"  # 寿光 vegetable grower, Shandong
FARM2 = "S7K2M4P6Q8R2"  # a second grower, quantity-only batch
WHOLESALER = "S3H5J7K9M2N4"  # Hangzhou, Zhejiang
MARKET = "S3H5J7K9M2N5"  # a wholesale market in Hangzhou
DIVISIONS = {FARM: "370783", FARM2: "370783", WHOLESALER: "330106", MARKET: "330106"}


def _code(province: str, body: str) -> str:
    code = province + body + check_character(province + body)
    assert has_valid_check(code)
    return code


CODES_A = [_code("37", f"K7MXH2TA9WP{n:02d}") for n in range(4)]
CODES_M = [_code("33", f"MERGEDA9WP{n:03d}") for n in range(2)]


def kg(amount: str) -> Quantity:
    return Quantity(Decimal(amount), Unit.KG)


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 6, day, hour, minute, tzinfo=UTC)


CERTIFICATE = Certificate(
    certificate_id="HG3707830000123",
    producer_name="寿光市绿源蔬菜合作社",
    contact_phone_masked="138****5678",
    issue_date=date(2025, 6, 2),
    commitment="不使用禁限用农药兽药、停用兽药和非法添加物，常规农药兽药残留不超标",
    basis=CertificateBasis.SELF_TEST,
    test_result="速测：有机磷类阴性",
)
BATCH_A = Batch(
    batch_id="B37A0001", subject_id=FARM, subject_division="370783",
    product_code="0101020301", product_name="寿光番茄", category="PLANT/VEGETABLE",
    quantity=kg("500"), production_date=date(2025, 6, 1), origin_division="370783",
    certificate=CERTIFICATE, code_count=4, created_at=at(2, 1, 30),
)
BATCH_B = Batch(  # no codes, no certificate: a quantity-only batch
    batch_id="B37B0002", subject_id=FARM2, subject_division="370783",
    product_code="0101020301", product_name="番茄", category="PLANT/VEGETABLE",
    quantity=kg("300.5"), production_date=date(2025, 6, 2), origin_division="370783",
    certificate=None, created_at=None,
)
BATCH_M = Batch(  # the output of the MERGE
    batch_id="B33M0003", subject_id=WHOLESALER, subject_division="330106",
    product_code="0101020301", product_name="番茄（混批）", category="PLANT/VEGETABLE",
    quantity=kg("500.5"), production_date=date(2025, 6, 4), origin_division="370783",
    certificate=dataclasses.replace(CERTIFICATE, certificate_id="HG3301060000456",
                                    producer_name="杭州鲜达批发有限公司"),
    parent_batch_ids=("B37A0001", "B37B0002"), code_count=2, created_at=at(4, 6),
)
TRACES = [
    InternalTrace("37", "SD-PEST-0001", "B37A0001", Activity.PESTICIDE,
                  datetime(2025, 5, 20, tzinfo=UTC),
                  {"name": "吡虫啉", "registration_number": "PD20080001", "amount": "0.5 KG"},
                  interval_days=7),
    InternalTrace("37", "SD-HARV-0002", "B37A0001", Activity.HARVEST, at(1, 23),
                  {"quantity": "500 KG"}),
    InternalTrace("37", "SD-INSP-0003", "B37A0001", Activity.INSPECTION, at(2, 0, 30),
                  {"item": "有机磷类农药残留", "result": "阴性", "inspector": "寿光市农产品检测站"},
                  passed=True),
]
SHIPMENT = Shipment(
    shipment_id="SH0001", batch_id="B37A0001", seller_subject_id=FARM,
    buyer_subject_id=WHOLESALER, codes=tuple(CODES_A[:3]), quantity=kg("375"),
    ship_time=at(2, 8), transport_document="YD-2025/0602 鲁B-12345", received_at=at(3, 2),
)
ENTRY_ADMITTED = MarketEntry(
    entry_id="ME0001", market_subject_id=MARKET, admitted=True, refusal=None, reason="",
    batch_id="B37A0001", code=CODES_A[0], certificate_id="HG3707830000123",
    check_time=at(3, 21),
)
ENTRY_REFUSED = MarketEntry(
    entry_id="ME0002", market_subject_id=MARKET, admitted=False,
    refusal=EntryRefusal.SHIPPED_TO_SOMEONE_ELSE,
    reason="这批货物发往了其他主体，不能入市", batch_id="B37A0001", code=CODES_A[3],
    certificate_id="HG3707830000123", check_time=at(3, 22),
)
MERGE = Transformation(
    transformation_id="TF0001", subject_id=WHOLESALER, kind=TransformationKind.MERGE,
    inputs=(TransformationInput("B37A0001", kg("200"), tuple(CODES_A[1:3])),
            TransformationInput("B37B0002", kg("300.5"))),
    output_batch_id="B33M0003", output_codes=tuple(CODES_M), occurred_at=at(4, 6),
)


def chain() -> EpcisRecords:
    return EpcisRecords(
        batches=[BATCH_A, BATCH_B, BATCH_M],
        batch_codes={"B37A0001": CODES_A, "B33M0003": CODES_M},
        shipments=[SHIPMENT],
        entries=[ENTRY_ADMITTED, ENTRY_REFUSED],
        transformations=[MERGE],
        traces=TRACES,
        subject_divisions=DIVISIONS,
    )


def export(records: EpcisRecords) -> dict[str, Any]:
    return build_document(records, resolver_base_url=BASE, created_at=CREATED)


def events_by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {event["eventID"]: event for event in document["epcisBody"]["eventList"]}


def official_validator() -> Draft7Validator:
    schema = json.loads(epcis.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def imported(results: list[ImportedEvent | RefusedEvent]) -> list[ImportedEvent]:
    return [result for result in results if isinstance(result, ImportedEvent)]


def refused(results: list[ImportedEvent | RefusedEvent]) -> list[RefusedEvent]:
    return [result for result in results if isinstance(result, RefusedEvent)]


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def test_export_of_a_chain_validates_against_the_official_schema() -> None:
    document = export(chain())
    assert validate(document) == []
    errors = [error.message for error in official_validator().iter_errors(document)]
    assert errors == []
    # through JSON too: what goes on the wire
    assert validate(json.loads(json.dumps(document, ensure_ascii=False))) == []


def test_export_has_one_event_per_record_of_the_right_type() -> None:
    document = export(chain())
    assert document["type"] == "EPCISDocument"
    assert document["schemaVersion"] == "2.0"
    assert document["creationDate"] == "2025-06-10T12:00:00.000+08:00"
    assert document["@context"] == [epcis.EPCIS_CONTEXT, {"agritrace": epcis.NAMESPACE}]
    events = document["epcisBody"]["eventList"]
    # 2 batches (the merged batch is commissioned by its TransformationEvent), 3 trace
    # records, shipment + receipt, 2 market entries, 1 transformation.
    assert len(events) == 10
    assert Counter(event["type"] for event in events) == {
        "ObjectEvent": 9, "TransformationEvent": 1}
    assert [event.get("bizStep") for event in events] == [
        f"{epcis.NAMESPACE}bizstep/pesticide_application",  # 2025-05-20 (UTC)
        "commissioning",  # batch B has no created_at: its production date, 06-02 00:00 +08:00
        f"{epcis.NAMESPACE}bizstep/harvesting",  # 06-01 23:00
        "inspecting",  # 06-02 00:30 (the trace inspection)
        "commissioning",  # batch A, 06-02 01:30
        "shipping",  # 06-02 08:00
        "receiving",  # 06-03 02:00
        "accepting",  # 06-03 21:00
        "inspecting",  # 06-03 22:00, refused at the gate
        "commissioning",  # the MERGE, 06-04 06:00
    ]
    for event in events:
        assert event["eventTimeZoneOffset"] == "+08:00"
        assert event["eventTime"].endswith("+08:00")
        assert event["eventID"].startswith("urn:uuid:")
    assert len({event["eventID"] for event in events}) == 10


def test_batch_with_codes_is_commissioned_with_its_codes_and_certificate() -> None:
    event = events_by_id(export(chain()))[record_event_id("batch", "B37A0001")]
    assert event["action"] == "ADD"
    assert event["bizStep"] == "commissioning"
    assert event["eventTime"] == "2025-06-02T09:30:00.000+08:00"
    assert event["epcList"] == [resolver_url(BASE, code) for code in CODES_A]
    assert event["epcList"][0] == f"{BASE}/tc/{CODES_A[0]}"
    assert "quantityList" not in event
    assert event["readPoint"] == {"id": f"urn:agritrace:location:{FARM}"}
    assert event["certificationInfo"] == "urn:agritrace:certificate:HG3707830000123"
    ilmd = event["ilmd"]
    assert ilmd["agritrace:productionDate"] == "2025-06-01"
    assert ilmd["agritrace:productCode"] == "0101020301"
    assert ilmd["agritrace:productName"] == "寿光番茄"
    assert ilmd["agritrace:category"] == "PLANT/VEGETABLE"
    assert ilmd["agritrace:originDivision"] == "370783"
    assert ilmd["agritrace:producer"] == f"urn:agritrace:subject:{FARM}"
    assert ilmd["agritrace:quantity"] == {"agritrace:amount": "500", "agritrace:unit": "KG"}
    assert ilmd["agritrace:certificate"] == {
        "agritrace:certificateID": "HG3707830000123",
        "agritrace:producerName": "寿光市绿源蔬菜合作社",
        "agritrace:contactPhoneMasked": "138****5678",
        "agritrace:issueDate": "2025-06-02",
        "agritrace:commitment": CERTIFICATE.commitment,
        "agritrace:basis": "SELF_TEST",
        "agritrace:testResult": "速测：有机磷类阴性",
    }


def test_quantity_only_batch_is_a_class_quantity() -> None:
    event = events_by_id(export(chain()))[record_event_id("batch", "B37B0002")]
    assert "epcList" not in event
    assert event["quantityList"] == [
        {"epcClass": "urn:agritrace:batch:B37B0002", "quantity": 300.5, "uom": "KGM"}]
    assert event["eventTime"] == "2025-06-02T00:00:00.000+08:00"
    assert "certificationInfo" not in event
    assert "agritrace:certificate" not in event["ilmd"]


def test_shipment_and_receipt_carry_parties_divisions_and_waybill() -> None:
    events = events_by_id(export(chain()))
    shipping = events[record_event_id("shipment", "SH0001")]
    receiving = events[record_event_id("receipt", "SH0001")]
    for event in (shipping, receiving):
        assert event["action"] == "OBSERVE"
        assert event["epcList"] == [resolver_url(BASE, code) for code in CODES_A[:3]]
        assert event["sourceList"] == [
            {"type": "owning_party", "source": f"urn:agritrace:subject:{FARM}"},
            {"type": "location", "source": "urn:agritrace:division:370783"}]
        assert event["destinationList"] == [
            {"type": "owning_party", "destination": f"urn:agritrace:subject:{WHOLESALER}"},
            {"type": "location", "destination": "urn:agritrace:division:330106"}]
        assert event["bizTransactionList"] == [{
            "type": "bol",
            "bizTransaction": "urn:agritrace:waybill:YD-2025%2F0602%20%E9%B2%81B-12345"}]
        assert event["agritrace:quantity"] == {"agritrace:amount": "375", "agritrace:unit": "KG"}
    assert (shipping["bizStep"], shipping["disposition"]) == ("shipping", "in_transit")
    assert shipping["readPoint"] == {"id": f"urn:agritrace:location:{FARM}"}
    assert (receiving["bizStep"], receiving["disposition"]) == ("receiving", "in_progress")
    assert receiving["bizLocation"] == {"id": f"urn:agritrace:location:{WHOLESALER}"}
    assert receiving["eventTime"] == "2025-06-03T10:00:00.000+08:00"


def test_market_entries_admitted_and_refused() -> None:
    events = events_by_id(export(chain()))
    admitted = events[record_event_id("entry", "ME0001")]
    refused_entry = events[record_event_id("entry", "ME0002")]
    market = {"id": f"urn:agritrace:location:{MARKET}"}
    assert admitted["readPoint"] == admitted["bizLocation"] == market
    assert (admitted["bizStep"], admitted["disposition"]) == ("accepting", "conformant")
    assert admitted["epcList"] == [resolver_url(BASE, CODES_A[0])]
    assert admitted["agritrace:admitted"] is True
    assert "agritrace:refusal" not in admitted
    assert refused_entry["readPoint"] == refused_entry["bizLocation"] == market
    assert (refused_entry["bizStep"], refused_entry["disposition"]) == (
        "inspecting", "non_conformant")
    assert refused_entry["agritrace:admitted"] is False
    assert refused_entry["agritrace:refusal"] == "SHIPPED_TO_SOMEONE_ELSE"
    assert refused_entry["agritrace:reason"] == "这批货物发往了其他主体，不能入市"


def test_merge_is_a_transformation_event_commissioning_the_output() -> None:
    document = export(chain())
    event = events_by_id(document)[record_event_id("transformation", "TF0001")]
    assert event["type"] == "TransformationEvent"
    assert event["transformationID"] == "urn:agritrace:transformation:TF0001"
    assert event["inputEPCList"] == [resolver_url(BASE, code) for code in CODES_A[1:3]]
    assert event["inputQuantityList"] == [
        {"epcClass": "urn:agritrace:batch:B37B0002", "quantity": 300.5, "uom": "KGM"}]
    assert event["outputEPCList"] == [resolver_url(BASE, code) for code in CODES_M]
    assert "outputQuantityList" not in event
    assert event["bizStep"] == "commissioning"
    assert event["agritrace:transformationKind"] == "MERGE"
    assert event["ilmd"]["agritrace:batchID"] == "B33M0003"
    assert event["ilmd"]["agritrace:parentBatchIDs"] == ["B37A0001", "B37B0002"]
    assert event["certificationInfo"] == "urn:agritrace:certificate:HG3301060000456"
    assert [item["agritrace:batchID"] for item in event["agritrace:inputs"]] == [
        "B37A0001", "B37B0002"]
    # the output batch is not commissioned a second time
    assert record_event_id("batch", "B33M0003") not in events_by_id(document)


def test_internal_trace_records_carry_their_details() -> None:
    events = events_by_id(export(chain()))
    pesticide = events[record_event_id("trace", "37", "SD-PEST-0001")]
    assert pesticide["quantityList"] == [{"epcClass": "urn:agritrace:batch:B37A0001"}]
    assert pesticide["bizLocation"] == {"id": f"urn:agritrace:location:{FARM}"}
    assert pesticide["agritrace:activity"] == "PESTICIDE"
    assert pesticide["agritrace:details"]["agritrace:registration_number"] == "PD20080001"
    assert pesticide["agritrace:intervalDays"] == 7
    assert pesticide["agritrace:safeFrom"] == "2025-05-27T08:00:00.000+08:00"
    inspection = events[record_event_id("trace", "37", "SD-INSP-0003")]
    assert (inspection["bizStep"], inspection["disposition"]) == ("inspecting", "conformant")
    assert inspection["agritrace:passed"] is True
    failed = dataclasses.replace(TRACES[2], passed=False)
    event = events_by_id(export(EpcisRecords(traces=[failed])))[
        record_event_id("trace", "37", "SD-INSP-0003")]
    assert event["disposition"] == "non_conformant"


@pytest.mark.parametrize("activity", list(Activity))
def test_every_activity_exports_validly(activity: Activity) -> None:
    trace = InternalTrace("44", f"GD-{activity.value}", "B44X0001", activity, at(5),
                          {"note": "记录 1/2"}, interval_days=3)
    document = export(EpcisRecords(traces=[trace]))
    assert validate(document) == []


def test_other_variants_export_validly() -> None:
    """Quantity shipments, certificate-only and empty gate checks, a quantity-only
    transformation without its output batch, naive datetimes, every unit."""
    shipment = dataclasses.replace(SHIPMENT, codes=(), transport_document="", received_at=None)
    by_certificate = dataclasses.replace(ENTRY_REFUSED, entry_id="ME9", code="", batch_id="",
                                         refusal=EntryRefusal.NO_CERTIFICATE)
    nothing = dataclasses.replace(by_certificate, entry_id="ME10", certificate_id="",
                                  refusal=EntryRefusal.UNKNOWN_CODE)
    bad_code = dataclasses.replace(ENTRY_REFUSED, entry_id="ME11", code="not a code/?",
                                   refusal=EntryRefusal.UNKNOWN_CODE)
    process = Transformation(
        "TF9", WHOLESALER, TransformationKind.PROCESS,
        (TransformationInput("B37B0002", Quantity(Decimal("1.5"), Unit.T)),),
        "B33Z9", (), datetime(2025, 6, 5, 8),  # naive: read as UTC
    )
    batches = [dataclasses.replace(BATCH_B, batch_id=f"B{unit.value}",
                                   quantity=Quantity(Decimal("12.345"), unit))
               for unit in Unit]
    document = export(EpcisRecords(batches=batches, shipments=[shipment],
                                   entries=[by_certificate, nothing, bad_code],
                                   transformations=[process]))
    assert validate(document) == []
    events = events_by_id(document)
    assert events[record_event_id("shipment", "SH0001")]["quantityList"] == [
        {"epcClass": "urn:agritrace:batch:B37A0001", "quantity": 375, "uom": "KGM"}]
    assert "bizTransactionList" not in events[record_event_id("shipment", "SH0001")]
    assert record_event_id("receipt", "SH0001") not in events
    assert events[record_event_id("entry", "ME9")]["quantityList"] == [
        {"epcClass": "urn:agritrace:certificate:HG3707830000123"}]
    assert events[record_event_id("entry", "ME10")]["epcList"] == []
    assert events[record_event_id("entry", "ME11")]["epcList"] == [
        f"{BASE}/tc/not%20a%20code%2F%3F"]
    transformation = events[record_event_id("transformation", "TF9")]
    assert transformation["inputQuantityList"] == [
        {"epcClass": "urn:agritrace:batch:B37B0002", "quantity": 1.5, "uom": "TNE"}]
    assert transformation["outputQuantityList"] == [{"epcClass": "urn:agritrace:batch:B33Z9"}]
    assert transformation["eventTime"] == "2025-06-05T16:00:00.000+08:00"
    assert "ilmd" not in transformation
    uoms = {event["quantityList"][0]["uom"] for event in events.values()
            if event.get("action") == "ADD"}
    assert uoms == set(epcis.UOM_OF_UNIT.values())
    assert {epcis.unit_of_uom(uom) for uom in uoms} == set(Unit)


def test_export_is_deterministic_whatever_the_order_of_the_records() -> None:
    first = json.dumps(export(chain()), ensure_ascii=False).encode("utf-8")
    assert json.dumps(export(chain()), ensure_ascii=False).encode("utf-8") == first
    records = chain()
    shuffled = random.Random(7)
    lists = {name: list(getattr(records, name))
             for name in ("batches", "shipments", "entries", "transformations", "traces")}
    for items in lists.values():
        shuffled.shuffle(items)
    again = dataclasses.replace(records, **lists)  # type: ignore[arg-type]
    assert json.dumps(export(again), ensure_ascii=False).encode("utf-8") == first


def test_export_round_trips_through_import() -> None:
    document = export(chain())
    results = parse_document(json.dumps(document, ensure_ascii=False).encode("utf-8"))
    assert refused(results) == []
    events = document["epcisBody"]["eventList"]
    assert len(results) == len(events)
    kinds = Counter(result.kind for result in imported(results))
    assert kinds == {EventKind.COMMISSIONING: 2, EventKind.OBSERVATION: 5,
                     EventKind.SHIPPING: 1, EventKind.RECEIVING: 1,
                     EventKind.TRANSFORMATION: 1}
    for result, event in zip(imported(results), events, strict=True):
        assert result.event_id == event["eventID"]
        assert result.event_type == event["type"]
        assert result.event_time == datetime.fromisoformat(event["eventTime"])
        assert result.event_time_zone_offset == "+08:00"
        if event["type"] == "TransformationEvent":
            assert result.input_epcs == tuple(event["inputEPCList"])
            assert result.epcs == tuple(event["outputEPCList"])
            assert result.transformation_id == "urn:agritrace:transformation:TF0001"
            assert result.input_quantities == (
                ("urn:agritrace:batch:B37B0002", Decimal("300.5"), "KGM"),)
        else:
            assert result.epcs == tuple(event.get("epcList", ()))
    shipping = next(r for r in imported(results) if r.kind is EventKind.SHIPPING)
    assert shipping.biz_step == "shipping"
    assert shipping.disposition == "in_transit"
    assert shipping.sources == (("owning_party", f"urn:agritrace:subject:{FARM}"),
                                ("location", "urn:agritrace:division:370783"))
    assert shipping.biz_transactions[0][0] == "bol"
    assert shipping.read_point == f"urn:agritrace:location:{FARM}"
    commissioning = [r for r in imported(results) if r.kind is EventKind.COMMISSIONING]
    assert commissioning[0].quantities == (
        ("urn:agritrace:batch:B37B0002", Decimal("300.5"), "KGM"),)


def test_imported_events_are_exported_again_and_keep_their_ids() -> None:
    events: dict[str, ImportedEvent] = {}
    for path in sorted(EXAMPLES.glob("*.jsonld")):
        for result in imported(parse_document(path.read_bytes())):
            events.setdefault(result.event_id, result)  # examples share some eventIDs
    records = dataclasses.replace(chain(), imported=list(events.values()))
    document = export(records)
    assert validate(document) == []
    assert len(document["epcisBody"]["eventList"]) == 10 + len(events)
    again = parse_document(json.dumps(document).encode("utf-8"))
    assert refused(again) == []
    by_id = {result.event_id: result for result in imported(again)}
    for event_id, original in events.items():
        back = by_id[event_id]
        assert (back.kind, back.event_time, back.epcs, back.quantities, back.biz_step) == (
            original.kind, original.event_time, original.epcs, original.quantities,
            original.biz_step)
    # an event that came without eventID goes out with its hash as eventID
    hashed = [e for e in events.values() if e.event_id.startswith(epcis.EVENT_HASH_PREFIX)]
    assert hashed
    assert imported_to_event(hashed[0])["eventID"] == hashed[0].event_id
    # and with the @context of its document, so its extension prefixes stay declared
    rail = next(e for e in events.values() if "rail:trainAxleCount" in e.raw)
    context = imported_to_event(rail)["@context"]
    assert any(isinstance(item, dict) and "rail" in item for item in context)


# --------------------------------------------------------------------------------------------
# Import of GS1's example documents
# --------------------------------------------------------------------------------------------

AGGREGATION = "AggregationEvent: the packing hierarchy"
ASSOCIATION = "AssociationEvent: associations between objects"
CORRECTION = "carries an errorDeclaration: corrections of earlier events are not accepted"
NO_OBJECTS = "names no objects"

# file -> (imported, refused, reasons of the refused events in order, kinds of the imported)
EXAMPLE_OUTCOMES: dict[str, tuple[int, int, list[str], list[EventKind]]] = {
    "AssociationEvent__AssociationEvent-a.jsonld": (0, 1, [ASSOCIATION], []),
    "AssociationEvent__AssociationEvent-b.jsonld": (0, 1, [ASSOCIATION], []),
    "AssociationEvent__AssociationEvent-d.jsonld": (0, 1, [ASSOCIATION], []),
    "AssociationEvent__AssociationEvent-e.jsonld": (0, 1, [ASSOCIATION], []),
    "AssociationEvent__AssociationEvent-g.jsonld": (0, 1, [ASSOCIATION], []),
    "AssociationEvent__AssociationEvent-h.jsonld": (0, 1, [ASSOCIATION], []),
    "Example-TransactionEvents-2020_07_03y.jsonld": (
        2, 0, [], [EventKind.OBSERVATION, EventKind.OBSERVATION]),
    "Example-Type-sourceOrDestination_measurement_bizTransaction.jsonld": (
        0, 1, [ASSOCIATION], []),
    "Example_9.6.1-ObjectEvent.jsonld": (
        2, 0, [], [EventKind.SHIPPING, EventKind.RECEIVING]),
    "Example_9.6.1-with-comment.jsonld": (
        2, 0, [], [EventKind.SHIPPING, EventKind.RECEIVING]),
    "Example_9.6.3-AggregationEvent.jsonld": (0, 1, [AGGREGATION], []),
    "Example_9.6.4-TransformationEvent.jsonld": (1, 0, [], [EventKind.TRANSFORMATION]),
    "WithDigitalLinkID__Example_9.6.1-ObjectEventWithDigitalLink.jsonld": (
        2, 0, [], [EventKind.SHIPPING, EventKind.RECEIVING]),
    "WithDigitalLinkID__Example_9.6.2-ObjectEventWithDigitalLink.jsonld": (
        1, 0, [], [EventKind.RECEIVING]),
    "WithDigitalLinkID__Example_9.6.4-TransformationEventWithDigitalLink.jsonld": (
        1, 0, [], [EventKind.TRANSFORMATION]),
    "WithErrorDeclaration__ErrorDeclarationAndCorrectiveEvent.jsonld": (
        1, 1, [CORRECTION], [EventKind.TRANSFORMATION]),
    "WithFullCombinationOfFields__aggregation_event_all_possible_fields.jsonld": (
        0, 1, [AGGREGATION], []),
    "WithFullCombinationOfFields__association_event_all_possible_fields.jsonld": (
        0, 1, [ASSOCIATION], []),
    "WithFullCombinationOfFields__transaction_event_all_possible_fields.jsonld": (
        0, 1, [CORRECTION], []),
    "WithFullCombinationOfFields__transformation_event_all_possible_fields.jsonld": (
        0, 1, [CORRECTION], []),
    "WithSensorData__SensorDataExample10.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample11.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample13.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample14.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample16.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample17.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample2.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample3.jsonld": (0, 1, [NO_OBJECTS], []),  # epcList []
    "WithSensorData__SensorDataExample5.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample6.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
    "WithSensorData__SensorDataExample8.jsonld": (0, 1, [AGGREGATION], []),
    "WithSensorData__SensorDataExample9.jsonld": (1, 0, [], [EventKind.OBSERVATION]),
}


def test_the_table_covers_every_example() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.jsonld")) == sorted(EXAMPLE_OUTCOMES)


@pytest.mark.parametrize("name", sorted(EXAMPLE_OUTCOMES))
def test_example_document(name: str) -> None:
    expected_imported, expected_refused, reasons, kinds = EXAMPLE_OUTCOMES[name]
    raw = (EXAMPLES / name).read_bytes()
    document = json.loads(raw)
    assert validate(document) == []
    assert list(official_validator().iter_errors(document)) == []
    results = parse_document(raw)
    assert [result.index for result in results] == list(range(len(results)))
    assert len(imported(results)) == expected_imported
    assert len(refused(results)) == expected_refused
    assert len(reasons) == expected_refused
    for result, reason in zip(refused(results), reasons, strict=True):
        assert reason in result.reason
    assert [result.kind for result in imported(results)] == kinds
    for result in imported(results):
        assert result.event_time.tzinfo is not None
        assert result.epcs or result.quantities
        assert validate({**document, "epcisBody": {"eventList": [
            imported_to_event(result)]}}) == []


def test_example_fields_are_read_and_normalised() -> None:
    shipping, receiving = imported(parse_document(
        (EXAMPLES / "Example_9.6.1-ObjectEvent.jsonld").read_bytes()))
    assert shipping.event_id == (
        "ni:///sha-256;df7bb3c352fef055578554f09f5e2aa41782150ced7bd0b8af24dd3ccb30ba69"
        "?ver=CBV2.0")
    assert shipping.event_time == datetime(2005, 4, 4, 2, 33, 31, 116000, tzinfo=UTC)
    assert shipping.epcs == ("urn:epc:id:sgtin:0614141.107346.2017",
                             "urn:epc:id:sgtin:0614141.107346.2018")
    assert shipping.biz_transactions == (("po", "http://transaction.acme.com/po/12345678"),)
    assert receiving.read_point == "urn:epc:id:sgln:0012345.11111.400"
    assert receiving.biz_location == "urn:epc:id:sgln:0012345.11111.0"
    assert receiving.raw["example:myField"] == "Example of a vendor/user extension"
    (quantity_receipt,) = imported(parse_document(
        (EXAMPLES / "WithDigitalLinkID__Example_9.6.2-ObjectEventWithDigitalLink.jsonld")
        .read_bytes()))
    assert quantity_receipt.quantities == (
        ("https://id.gs1.org/01/70614141123451/10/998877", Decimal(200), "KGM"),)
    assert epcis.unit_of_uom(quantity_receipt.quantities[0][2]) is Unit.KG
    assert quantity_receipt.sources == (
        ("possessing_party", "urn:epc:id:sgln:4012345.00001.0"),
        ("location", "urn:epc:id:sgln:4012345.00225.0"))
    (transformation,) = imported(parse_document(
        (EXAMPLES / "Example_9.6.4-TransformationEvent.jsonld").read_bytes()))
    assert transformation.action is None
    assert len(transformation.input_epcs) == 2
    assert len(transformation.input_quantities) == 3
    assert len(transformation.epcs) == 4
    assert transformation.input_quantities[1] == (
        "urn:epc:class:lgtin:0614141.077777.987", Decimal(30), None)


# --------------------------------------------------------------------------------------------
# Event ids of events without eventID
# --------------------------------------------------------------------------------------------


def test_events_without_event_id_get_a_deterministic_hash() -> None:
    raw = (EXAMPLES / "Example-TransactionEvents-2020_07_03y.jsonld").read_bytes()
    first = parse_document(raw)
    assert [result.event_id for result in parse_document(raw)] == [
        result.event_id for result in first]
    document = json.loads(raw)
    for result, event in zip(first, document["epcisBody"]["eventList"], strict=True):
        assert "eventID" not in event
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        assert result.event_id == f"urn:agritrace:event-hash:sha-256:{digest}"
    assert first[0].event_id != first[1].event_id
    # key order and whitespace do not matter; recordTime does not either; content does
    event = document["epcisBody"]["eventList"][0]
    reordered = dict(reversed(list(event.items())))
    assert event_hash(reordered) == first[0].event_id
    assert event_hash({**event, "recordTime": "2025-01-01T00:00:00Z"}) == first[0].event_id
    assert event_hash({**event, "eventTime": "2019-10-04T13:12:00.001Z"}) != first[0].event_id
    pretty = json.dumps(document, indent=7, sort_keys=True).encode("utf-8")
    assert [result.event_id for result in parse_document(pretty)] == [
        result.event_id for result in first]


# --------------------------------------------------------------------------------------------
# Refusals of documents and of events
# --------------------------------------------------------------------------------------------


def _document(*events: dict[str, Any]) -> bytes:
    return json.dumps({
        "@context": [epcis.EPCIS_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2025-06-01T00:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }).encode("utf-8")


OBSERVE: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2025-06-01T08:00:00+08:00",
    "eventTimeZoneOffset": "+08:00",
    "action": "OBSERVE",
    "bizStep": "shipping",
    "epcList": [f"{BASE}/tc/{CODES_A[0]}"],
}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not JSON"),
        (b"{\"type\": \"EPCISDocument\",", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "is a JSON list, not an EPCISDocument"),
        (b"{\"type\": \"EPCISQueryDocument\"}", "type is 'EPCISQueryDocument'"),
        (b"{\"schemaVersion\": \"2.0\"}", "type is None"),
        (b"{\"type\": \"EPCISDocument\", \"x\": NaN}", "NaN is not a JSON number"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_documents_that_are_not_epcis_documents_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="the document") as caught:
        parse_document(raw)
    assert message in str(caught.value)


def test_schema_invalid_documents_are_refused_with_the_first_errors() -> None:
    no_offset = {key: value for key, value in OBSERVE.items() if key != "eventTimeZoneOffset"}
    with pytest.raises(ValueError) as caught:
        parse_document(_document(no_offset))
    assert str(caught.value).startswith(
        "the document is not valid against the EPCIS 2.0 JSON schema: ")
    assert "$.epcisBody.eventList[0]: 'eventTimeZoneOffset' is a required property" in str(
        caught.value)
    misspelt = {**OBSERVE, "bizstep": "shipping"}  # an extension name must be a URI
    with pytest.raises(ValueError, match=r"eventList\[0\].*'bizstep'"):
        parse_document(_document(misspelt))
    many = [{**OBSERVE, "eventTime": "yesterday"} for _ in range(5)]
    with pytest.raises(ValueError, match=r"is not a 'date-time'.*\(and 2 more\)$"):
        parse_document(_document(*many))
    document = json.loads(_document(OBSERVE))
    del document["creationDate"]
    with pytest.raises(ValueError, match="'creationDate' is a required property"):
        parse_document(json.dumps(document).encode())


def test_oversized_documents_are_refused_before_parsing() -> None:
    with pytest.raises(ValueError, match="at most 16777216"):
        parse_document(b" " * (epcis.MAX_DOCUMENT_BYTES + 1))


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({**OBSERVE, "action": "DELETE"}, "action DELETE is not accepted"),
        ({**OBSERVE, "bizStep": "void_shipping"}, "void_shipping cancels an earlier shipment"),
        ({**OBSERVE, "epcList": []}, NO_OBJECTS),
        ({**{k: v for k, v in OBSERVE.items() if k != "epcList"},
          "readPoint": {"id": "urn:epc:id:sgln:4012345.00005.0"},
          "sensorElementList": [{"sensorReport": [{"type": "Temperature", "value": 4}]}]},
         NO_OBJECTS),
        ({**OBSERVE, "errorDeclaration": {"declarationTime": "2025-06-02T00:00:00Z"}},
         CORRECTION),
        ({"type": "TransformationEvent", "eventTime": "2025-06-01T08:00:00+08:00",
          "eventTimeZoneOffset": "+08:00", "transformationID": "urn:agritrace:transformation:1",
          "inputEPCList": [f"{BASE}/tc/{CODES_A[0]}"]},
         "needs both inputs and outputs"),
        ({"type": "https://ns.example.com/epcis/ReadingEvent", "@context": {},
          "eventTime": "2025-06-01T08:00:00+08:00", "eventTimeZoneOffset": "+08:00"},
         "extension event types are not mapped"),
    ],
)
def test_events_that_do_not_map_are_refused_one_by_one(
    event: dict[str, Any], reason: str
) -> None:
    results = parse_document(_document(OBSERVE, event))
    assert isinstance(results[0], ImportedEvent)
    assert isinstance(results[1], RefusedEvent)
    assert results[1].index == 1
    assert reason in results[1].reason
    assert results[1].event_id.startswith(epcis.EVENT_HASH_PREFIX)


def test_a_repeated_event_id_is_refused() -> None:
    event = {**OBSERVE, "eventID": "urn:uuid:8a1d3c2e-0000-4000-8000-000000000001"}
    results = parse_document(_document(event, {**event, "bizStep": "receiving"}))
    assert isinstance(results[0], ImportedEvent)
    assert isinstance(results[1], RefusedEvent)
    assert results[1].reason == "repeats the eventID of event 0 of this document"


def test_kinds_and_cbv_forms() -> None:
    web = {**OBSERVE, "bizStep": "https://ref.gs1.org/cbv/BizStep-receiving",
           "disposition": "https://ref.gs1.org/cbv/Disp-in_progress",
           "bizTransactionList": [{"type": "https://ref.gs1.org/cbv/BTT-desadv",
                                   "bizTransaction": "urn:agritrace:waybill:1"}],
           "sourceList": [{"type": "https://gs1.org/voc/SDT-owning_party",
                           "source": "urn:agritrace:subject:S1"}]}
    added = {**OBSERVE, "action": "ADD", "bizStep": "shipping"}
    custom = {**OBSERVE, "bizStep": "https://ns.example.com/bizstep/grading"}
    transaction = {**OBSERVE, "type": "TransactionEvent", "action": "ADD",
                   "bizTransactionList": [{"bizTransaction": "urn:agritrace:po:1"}]}
    results = imported(parse_document(_document(web, added, custom, transaction)))
    assert [result.kind for result in results] == [
        EventKind.RECEIVING, EventKind.COMMISSIONING, EventKind.OBSERVATION,
        EventKind.SHIPPING]
    assert (results[0].biz_step, results[0].disposition) == ("receiving", "in_progress")
    assert results[0].biz_transactions == (("desadv", "urn:agritrace:waybill:1"),)
    assert results[0].sources == (("owning_party", "urn:agritrace:subject:S1"),)
    assert results[2].biz_step == "https://ns.example.com/bizstep/grading"
    assert results[3].biz_transactions == (("", "urn:agritrace:po:1"),)
    assert cbv_short_name("urn:epcglobal:cbv:bizstep:shipping", "bizStep") == "shipping"
    assert cbv_short_name("gs1:Disp-in_transit", "disposition") == "in_transit"
    assert cbv_short_name("https://ref.gs1.org/cbv/Disp-in_transit", "bizStep") == (
        "https://ref.gs1.org/cbv/Disp-in_transit")


def test_event_time_is_read_as_an_aware_datetime() -> None:
    results = imported(parse_document(_document(
        {**OBSERVE, "eventTime": "2025-06-01T00:00:00.123456789Z"})))
    assert results[0].event_time == datetime(2025, 6, 1, 0, 0, 0, 123456, tzinfo=UTC)


def test_the_compiled_validator_is_cached() -> None:
    assert epcis._validator() is epcis._validator()
    assert validate({"type": "EPCISDocument"}) != []
    assert validate(copy.deepcopy(json.loads(_document(OBSERVE)))) == []
