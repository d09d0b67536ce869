"""Interchange (service_layer/interchange.py) against the in-memory fakes and the real EPCIS
codec (adapters/epcis.py, which validates every export against the official GS1 EPCIS 2.0
schema): a chain recorded through the use cases exported as EPCIS, imports of trading
partners' documents, and the recall spreadsheet."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from agritrace_flow.adapters.epcis import NAMESPACE, code_uri, record_event_id, validate
from agritrace_flow.domain.model import Activity, Batch, CertificateBasis, TransformationKind
from agritrace_flow.service_layer.interchange import SHEET_COLUMNS, ImportOutcome, Interchange
from agritrace_flow.service_layer.services import (
    BatchInput,
    CertificateInput,
    FlowService,
    ShipmentInput,
    TraceInput,
)
from agritrace_kernel.errors import InvalidArgument, NotFound, PermissionDenied
from agritrace_testing.fakes import load_beside

fakes = load_beside(__file__, "fakes.py", "agritrace_flow_unit_fakes")

COOP, MARKET, RETAILER = fakes.COOP, fakes.MARKET, fakes.RETAILER
TOMATO = "010403001"
BASE = "https://trace.agri.example.cn/national"  # conftest's RESOLVER_BASE_URL
EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
DAY_START = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
DAY_END = datetime(2024, 5, 2, 0, 0, tzinfo=UTC)


def codes_as_urls(codes: list[str]) -> list[str]:
    return [code_uri(BASE, code) for code in codes]


# -- a chain, recorded through the use cases --------------------------------------------------


@dataclass
class Chain:
    batch: Batch  # COOP's tomatoes
    codes: list[str]
    shipment_id: str
    entry_id: str
    output: Batch  # MARKET's repack of what it received
    output_codes: list[str]


@pytest.fixture
def chain(service: FlowService, coding: Any, clock: Any) -> Chain:
    """COOP's 500 kg of tomatoes with 3 codes and a certificate (created at 08:00); three
    production records from Shandong's platform (spraying, harvest, a passed inspection);
    300 kg with two codes shipped to MARKET at 09:00, received at 13:00, admitted at the
    market's gate at 14:00; repackaged by MARKET at 15:00 into a batch with 2 new codes."""
    codes = coding.issue(COOP, 3)
    batch = service.create_batch("req-batch", BatchInput(
        subject_id=COOP, product_code=TOMATO, product_name="寿光番茄", amount="500",
        unit="KG", production_date=date(2024, 4, 30), origin_division="",
        certificate=CertificateInput(
            certificate_id="HG370783000001", producer_name="寿光市绿源蔬菜合作社",
            contact_phone="13812345678", issue_date=date(2024, 4, 30),
            commitment="不使用禁限用农药兽药、停用兽药和非法添加物",
            basis=CertificateBasis.SELF_TEST, test_result="速测：有机磷类阴性"),
        codes=tuple(codes))).value
    for record_id, activity, at, interval, passed in [
        ("SD-0001", Activity.PESTICIDE, datetime(2024, 4, 20, 2, 0, tzinfo=UTC), 7, True),
        ("SD-0002", Activity.HARVEST, datetime(2024, 4, 29, 23, 0, tzinfo=UTC), 0, True),
        ("SD-0003", Activity.INSPECTION, datetime(2024, 4, 30, 1, 0, tzinfo=UTC), 0, True),
    ]:
        service.record_internal_trace(TraceInput(
            "37", record_id, batch.batch_id, at, activity, {"note": record_id}, interval,
            passed), actor=fakes.PRINCIPALS[fakes.PLATFORM_37])
    clock.advance(hours=1)
    shipment = service.record_shipment("req-ship", ShipmentInput(
        batch.batch_id, COOP, MARKET, (codes[0], codes[1]), "300", "KG", None,
        "鲁B-12345")).value
    clock.advance(hours=4)
    service.confirm_receipt("req-receive", MARKET, codes[0])
    clock.advance(hours=1)
    entry = service.record_market_entry("req-gate", MARKET, codes[0], "", None).value
    assert entry.admitted
    clock.advance(hours=1)
    output, output_codes = service.record_transformation(
        "req-repack", MARKET, TransformationKind.REPACK,
        [(batch.batch_id, "300", "KG", (codes[0], codes[1]))],
        BatchInput(subject_id=MARKET, product_code=TOMATO, product_name="寿光番茄（小包装）",
                   amount="300", unit="KG", production_date=date(2024, 5, 1),
                   origin_division="370783", certificate=None),
        2).value
    clock.advance(hours=1)
    return Chain(batch, codes, shipment.shipment_id, entry.entry_id, output, output_codes)


def events_of(document: bytes) -> list[dict[str, Any]]:
    parsed = json.loads(document)
    assert validate(parsed) == []
    assert parsed["@context"] == [EPCIS_CONTEXT, {"agritrace": NAMESPACE}]
    assert parsed["type"] == "EPCISDocument"
    events: list[dict[str, Any]] = parsed["epcisBody"]["eventList"]
    return events


# -- export ------------------------------------------------------------------------------------


def test_a_batchs_chain_exports_as_a_valid_epcis_document(
    interchange: Interchange, chain: Chain
) -> None:
    document, count = interchange.export_epcis(chain.batch.batch_id, "", None, None)

    events = events_of(document)
    assert count == len(events) == 8
    assert Counter(event["type"] for event in events) == {
        "ObjectEvent": 7, "TransformationEvent": 1}
    assert [(event["bizStep"], event["eventTime"]) for event in events] == [
        (f"{NAMESPACE}bizstep/pesticide_application", "2024-04-20T10:00:00.000+08:00"),
        (f"{NAMESPACE}bizstep/harvesting", "2024-04-30T07:00:00.000+08:00"),
        ("inspecting", "2024-04-30T09:00:00.000+08:00"),
        ("commissioning", "2024-05-01T16:00:00.000+08:00"),
        ("shipping", "2024-05-01T17:00:00.000+08:00"),
        ("receiving", "2024-05-01T21:00:00.000+08:00"),
        ("accepting", "2024-05-01T22:00:00.000+08:00"),
        ("repackaging", "2024-05-01T23:00:00.000+08:00"),
    ]
    assert json.loads(document)["creationDate"] == "2024-05-02T00:00:00.000+08:00"  # now


def test_the_exported_events_carry_the_records(
    interchange: Interchange, chain: Chain
) -> None:
    document, _ = interchange.export_epcis(chain.batch.batch_id, "", None, None)
    events = {event["bizStep"]: event for event in events_of(document)}

    created = events["commissioning"]
    assert created["eventID"] == record_event_id("batch", chain.batch.batch_id)
    assert created["epcList"] == codes_as_urls(sorted(chain.codes))
    assert created["certificationInfo"] == "urn:agritrace:certificate:HG370783000001"
    assert created["ilmd"]["agritrace:batchID"] == chain.batch.batch_id
    assert created["ilmd"]["agritrace:certificate"]["agritrace:contactPhoneMasked"] == \
        "138****5678"
    shipped = events["shipping"]
    assert shipped["epcList"] == codes_as_urls(chain.codes[:2])
    assert shipped["agritrace:shipmentID"] == chain.shipment_id
    assert shipped["sourceList"] == [
        {"type": "owning_party", "source": f"urn:agritrace:subject:{COOP}"},
        {"type": "location", "source": "urn:agritrace:division:370783"}]
    assert shipped["destinationList"] == [
        {"type": "owning_party", "destination": f"urn:agritrace:subject:{MARKET}"},
        {"type": "location", "destination": "urn:agritrace:division:110106"}]
    assert events["receiving"]["eventID"] == record_event_id("receipt", chain.shipment_id)
    assert events["accepting"]["agritrace:entryID"] == chain.entry_id
    assert events["accepting"]["epcList"] == codes_as_urls([chain.codes[0]])
    repacked = events["repackaging"]
    assert repacked["inputEPCList"] == codes_as_urls(chain.codes[:2])
    assert repacked["outputEPCList"] == codes_as_urls(chain.output_codes)
    assert repacked["ilmd"]["agritrace:batchID"] == chain.output.batch_id
    assert repacked["ilmd"]["agritrace:parentBatchIDs"] == [chain.batch.batch_id]
    assert repacked["agritrace:subject"] == f"urn:agritrace:subject:{MARKET}"
    assert events[f"{NAMESPACE}bizstep/pesticide_application"]["agritrace:intervalDays"] == 7


def test_the_chain_is_the_same_from_either_end(interchange: Interchange, chain: Chain) -> None:
    from_input, _ = interchange.export_epcis(chain.batch.batch_id, "", None, None)
    from_output, _ = interchange.export_epcis(chain.output.batch_id, "", None, None)

    assert from_input == from_output


def test_an_export_reads_nothing_but_writes_nothing(
    interchange: Interchange, database: Any, chain: Chain
) -> None:
    before = database.snapshot()
    commits, events = database.commits, list(database.published)

    interchange.export_epcis(chain.batch.batch_id, "", None, None)
    interchange.export_epcis("", MARKET, DAY_START, DAY_END)

    assert database.committed == before
    assert (database.commits, database.published) == (commits, events)


def test_a_batch_nobody_transformed_exports_alone(
    service: FlowService, interchange: Interchange
) -> None:
    batch = service.create_batch("req-plain", BatchInput(
        COOP, TOMATO, "", "20", "KG", date(2024, 4, 30), "", None)).value

    document, count = interchange.export_epcis(batch.batch_id, "", None, None)

    (event,) = events_of(document)
    assert count == 1
    assert event["quantityList"] == [{"epcClass": f"urn:agritrace:batch:{batch.batch_id}",
                                      "quantity": 20, "uom": "KGM"}]


# -- import, and the export of a subject's time range -----------------------------------------


def object_event(event_id: str, at: str, **extra: Any) -> dict[str, Any]:
    return {"type": "ObjectEvent", "eventID": event_id, "eventTime": at,
            "eventTimeZoneOffset": "+08:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"], "action": "OBSERVE",
            "bizStep": "receiving", "disposition": "in_progress",
            "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.0"}, **extra}


AGGREGATION = {
    "type": "AggregationEvent", "eventID": "urn:uuid:6a1c3e0e-1d4c-4f5e-9a8b-000000000003",
    "eventTime": "2024-05-01T10:00:00.000+08:00", "eventTimeZoneOffset": "+08:00",
    "parentID": "urn:epc:id:sscc:0614141.1234567890",
    "childEPCs": ["urn:epc:id:sgtin:0614141.107346.2018"], "action": "ADD",
    "bizStep": "packing",
}
IN_RANGE = "urn:uuid:6a1c3e0e-1d4c-4f5e-9a8b-000000000001"
OUT_OF_RANGE = "urn:uuid:6a1c3e0e-1d4c-4f5e-9a8b-000000000002"


def document(*events: dict[str, Any]) -> bytes:
    parsed = {
        "@context": [EPCIS_CONTEXT, {"example": "http://ns.example.com/epcis/"}],
        "type": "EPCISDocument", "schemaVersion": "2.0",
        "creationDate": "2024-05-01T12:00:00.000+08:00",
        "epcisBody": {"eventList": list(events)},
    }
    assert validate(parsed) == []
    return json.dumps(parsed).encode()


PARTNER_DOCUMENT = document(
    object_event(IN_RANGE, "2024-05-01T09:30:00.000+08:00", **{"example:lot": "L-1"}),
    object_event(OUT_OF_RANGE, "2024-04-29T09:30:00.000+08:00"),
    AGGREGATION,
)
AGGREGATION_REASON = ("AggregationEvent: the packing hierarchy (what is packed in what) is "
                      "not recorded by the flow service")


def test_an_import_stores_each_mapped_event_once_and_refuses_the_others(
    interchange: Interchange, database: Any
) -> None:
    outcomes = interchange.import_epcis(PARTNER_DOCUMENT, MARKET,
                                        actor=fakes.PRINCIPALS[fakes.OPERATOR_MARKET])

    assert outcomes == [
        ImportOutcome(0, IN_RANGE, "STORED"),
        ImportOutcome(1, OUT_OF_RANGE, "STORED"),
        ImportOutcome(2, AGGREGATION["eventID"], "REFUSED", AGGREGATION_REASON),
    ]
    stored = {event_id: row for (_, event_id), row in database.committed.imported.items()}
    assert sorted(database.committed.imported) == [(MARKET, IN_RANGE), (MARKET, OUT_OF_RANGE)]
    assert {row.subject_id for row in stored.values()} == {MARKET}
    assert stored[IN_RANGE].kind == "RECEIVING"
    assert stored[IN_RANGE].event_time == datetime(2024, 5, 1, 1, 30, tzinfo=UTC)
    assert json.loads(stored[IN_RANGE].event_json)["example:lot"] == "L-1"
    (event,) = database.published
    assert (event.source, event.name) == ("flow", "epcis_imported")
    assert event.payload == {"subject_id": MARKET, "event_ids": [IN_RANGE, OUT_OF_RANGE],
                             "kinds": ["RECEIVING"]}
    assert database.commits == 1


def test_an_import_sent_again_is_replayed_and_announced_no_more(
    interchange: Interchange, database: Any
) -> None:
    interchange.import_epcis(PARTNER_DOCUMENT, MARKET)
    before = database.snapshot()
    published = list(database.published)

    outcomes = interchange.import_epcis(PARTNER_DOCUMENT, MARKET)

    assert [(o.event_id, o.outcome) for o in outcomes] == [
        (IN_RANGE, "REPLAYED"), (OUT_OF_RANGE, "REPLAYED"),
        (AGGREGATION["eventID"], "REFUSED")]
    assert database.committed == before
    assert database.published == published


def test_a_subjects_time_range_exports_its_batches_and_its_imported_events(
    interchange: Interchange, chain: Chain
) -> None:
    interchange.import_epcis(PARTNER_DOCUMENT, MARKET)

    exported, count = interchange.export_epcis("", MARKET, DAY_START, DAY_END,
                                               actor=fakes.PRINCIPALS[fakes.OPERATOR_MARKET])

    events = events_of(exported)
    assert count == 2
    assert [(event["type"], event["eventID"]) for event in events] == [
        ("ObjectEvent", IN_RANGE),
        ("TransformationEvent", record_event_id("transformation", chain.output.batch_id)),
    ]
    assert events[0]["example:lot"] == "L-1"
    assert events[0]["@context"] == [EPCIS_CONTEXT, {"example": "http://ns.example.com/epcis/"}]


def test_a_subjects_export_without_a_range_holds_every_imported_event(
    interchange: Interchange, chain: Chain
) -> None:
    interchange.import_epcis(PARTNER_DOCUMENT, MARKET)

    exported, count = interchange.export_epcis("", MARKET, None, None)

    assert count == 3
    assert {event["eventID"] for event in events_of(exported)} >= {IN_RANGE, OUT_OF_RANGE}


def test_a_batch_export_holds_no_imported_events(
    interchange: Interchange, chain: Chain
) -> None:
    interchange.import_epcis(PARTNER_DOCUMENT, MARKET)

    exported, count = interchange.export_epcis(chain.output.batch_id, MARKET, None, None)

    assert count == 8
    assert IN_RANGE not in {event["eventID"] for event in events_of(exported)}


@pytest.mark.parametrize(
    ("raw", "starts"),
    [(b"this is not JSON", "the document is not JSON"),
     (b"\xff\xfe\x00", "the document is not UTF-8 text"),
     (b"[1, 2]", "the document is a JSON list, not an EPCISDocument object"),
     (b'{"type": "EPCISQueryDocument"}', "the document's type is 'EPCISQueryDocument'"),
     (json.dumps({"type": "EPCISDocument", "schemaVersion": "2.0"}).encode(),
      "the document is not valid against the EPCIS 2.0 JSON schema")],
)
def test_a_document_refused_as_a_whole_is_an_invalid_document(
    interchange: Interchange, database: Any, raw: bytes, starts: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        interchange.import_epcis(raw, MARKET)

    (violation,) = error.value.violations
    assert violation.field == "document"
    assert violation.description.startswith(starts)
    assert database.committed == fakes.Tables()
    assert (database.published, database.commits) == ([], 0)


def test_an_empty_document_is_refused(interchange: Interchange, database: Any) -> None:
    with pytest.raises(InvalidArgument) as error:
        interchange.import_epcis(b"", MARKET)

    assert [(v.field, v.description) for v in error.value.violations] == [
        ("document", "is empty")]
    assert (database.published, database.commits) == ([], 0)


def test_only_the_subject_imports_its_events(interchange: Interchange, database: Any) -> None:
    with pytest.raises(PermissionDenied) as error:
        interchange.import_epcis(PARTNER_DOCUMENT, MARKET,
                                 actor=fakes.PRINCIPALS[fakes.OPERATOR_RETAILER])

    assert error.value.reason == "NOT_OWN_SUBJECT"
    assert database.committed == fakes.Tables()
    assert (database.published, database.commits) == ([], 0)


def test_an_import_for_an_unknown_subject_is_not_found(
    interchange: Interchange, database: Any
) -> None:
    with pytest.raises(NotFound) as error:
        interchange.import_epcis(PARTNER_DOCUMENT, "S99NOBODY")

    assert error.value.reason == "SUBJECT_NOT_FOUND"
    assert (database.published, database.commits) == ([], 0)


# Regression (found by this test, fixed):
# imported events are keyed by their eventID alone (imported_events.event_id is
# the primary key, add_imported ignores the subject), so when two trading partners import the
# same EPCIS document - the seller's and the buyer's platform both forwarding one shipping
# event, the usual case - the second is told REPLAYED although it never imported the event,
# and its subject's exports never include it. The key (and the replay check) should be
# (subject, eventID).
def test_a_document_imported_by_two_partners_is_in_both_exports(
    interchange: Interchange
) -> None:
    interchange.import_epcis(PARTNER_DOCUMENT, MARKET)

    outcomes = interchange.import_epcis(PARTNER_DOCUMENT, RETAILER)

    assert [o.outcome for o in outcomes] == ["STORED", "STORED", "REFUSED"]
    exported, _ = interchange.export_epcis("", RETAILER, None, None)
    assert {event["eventID"] for event in events_of(exported)} == {IN_RANGE, OUT_OF_RANGE}


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [(fakes.OPERATOR_MARKET, True), (fakes.PLATFORM_11, True),
     (fakes.REGULATOR_NATIONAL, True), (fakes.OPERATOR_RETAILER, False),
     (fakes.PLATFORM_37, False), (fakes.REGULATOR_PROVINCE, False)],
)
def test_who_may_export_a_subjects_records(
    interchange: Interchange, chain: Chain, caller: str, allowed: bool
) -> None:
    actor = fakes.PRINCIPALS[caller]
    if allowed:
        _, count = interchange.export_epcis("", MARKET, DAY_START, DAY_END, actor=actor)
        assert count == 1
        return
    with pytest.raises(PermissionDenied) as error:
        interchange.export_epcis("", MARKET, DAY_START, DAY_END, actor=actor)
    assert error.value.reason == "NOT_PERMITTED"


def test_an_export_names_a_batch_or_a_subject(interchange: Interchange) -> None:
    with pytest.raises(InvalidArgument) as error:
        interchange.export_epcis(" ", "", None, None)

    assert [v.field for v in error.value.violations] == ["batch_id"]


def test_an_export_range_must_end_after_it_starts(
    interchange: Interchange, chain: Chain
) -> None:
    with pytest.raises(InvalidArgument) as error:
        interchange.export_epcis("", MARKET, DAY_END, DAY_START)

    assert [v.field for v in error.value.violations] == ["end_time"]


# -- the recall spreadsheet ---------------------------------------------------------------------


def test_a_batchs_rows_cover_its_chain_in_time_order(
    interchange: Interchange, chain: Chain
) -> None:
    rows = list(interchange.record_rows(chain.batch.batch_id, "", None, None))

    assert all(len(row) == len(SHEET_COLUMNS) for row in rows)
    assert rows == sorted(rows)
    a, out = chain.batch.batch_id, chain.output.batch_id
    assert [(row[0], row[1], row[4]) for row in rows] == sorted([
        ("2024-04-20T02:00:00+00:00", a, "INTERNAL_TRACE"),
        ("2024-04-29T23:00:00+00:00", a, "INTERNAL_TRACE"),
        ("2024-04-30T01:00:00+00:00", a, "INTERNAL_TRACE"),
        ("2024-05-01T08:00:00+00:00", a, "CREATED"),
        ("2024-05-01T09:00:00+00:00", a, "SHIPPED"),
        ("2024-05-01T13:00:00+00:00", a, "RECEIVED"),
        ("2024-05-01T14:00:00+00:00", a, "MARKET_ENTRY"),
        ("2024-05-01T15:00:00+00:00", a, "TRANSFORMED_INTO"),
        ("2024-05-01T15:00:00+00:00", out, "TRANSFORMED_FROM"),
    ])  # ties in time are ordered by batch id
    by_kind = {row[4]: row for row in rows}
    assert by_kind["CREATED"] == (
        "2024-05-01T08:00:00+00:00", a, TOMATO, "寿光番茄", "CREATED", COOP, "", "500", "KG",
        "", a, "寿光番茄 500 KG produced in 370783")
    assert by_kind["SHIPPED"] == (
        "2024-05-01T09:00:00+00:00", a, TOMATO, "寿光番茄", "SHIPPED", COOP, MARKET, "300",
        "KG", "2", chain.shipment_id, f"300 KG to {MARKET} (37→11)")
    assert by_kind["RECEIVED"][5:11] == (MARKET, COOP, "300", "KG", "2", chain.shipment_id)
    assert by_kind["MARKET_ENTRY"][5:] == (MARKET, "", "", "", "", chain.entry_id, "admitted")
    assert by_kind["TRANSFORMED_FROM"][2:4] == (TOMATO, "寿光番茄（小包装）")


def test_rows_of_a_product_cover_its_batches_within_the_range(
    interchange: Interchange, chain: Chain
) -> None:
    rows = list(interchange.record_rows(
        "", TOMATO, datetime(2024, 5, 1, 12, 0, tzinfo=UTC), DAY_END,
        actor=fakes.PRINCIPALS[fakes.REGULATOR_PROVINCE]))

    assert [(row[1], row[4]) for row in rows] == [
        (chain.output.batch_id, "TRANSFORMED_FROM")]


def test_rows_of_a_product_are_those_the_caller_may_read(
    interchange: Interchange, chain: Chain
) -> None:
    rows = list(interchange.record_rows("", TOMATO, None, None,
                                        actor=fakes.PRINCIPALS[fakes.OPERATOR_MARKET]))

    assert {row[1] for row in rows} == {chain.output.batch_id}


def test_a_product_without_visible_batches_is_nothing_to_export_for_an_operator(
    interchange: Interchange, chain: Chain
) -> None:
    with pytest.raises(NotFound) as error:
        interchange.record_rows("", TOMATO, None, None,
                                actor=fakes.PRINCIPALS[fakes.OPERATOR_RETAILER])

    assert error.value.reason == "NOTHING_TO_EXPORT"


def test_a_product_without_batches_is_an_empty_sheet_for_a_regulator(
    interchange: Interchange, chain: Chain
) -> None:
    rows = interchange.record_rows("", "020201001", None, None,
                                   actor=fakes.PRINCIPALS[fakes.REGULATOR_NATIONAL])

    assert list(rows) == []


@pytest.mark.parametrize("product_code", ["010403999", "010403", "", "tomato"])
def test_rows_need_a_product_code_of_the_classification(
    interchange: Interchange, product_code: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        interchange.record_rows("", product_code, None, None)

    assert [(v.field, v.description) for v in error.value.violations] == [
        ("product_code", "give a batch, or a product code of the classification")]


def test_rows_of_a_batch_the_caller_may_not_read_are_refused(
    interchange: Interchange, chain: Chain
) -> None:
    with pytest.raises(PermissionDenied):
        interchange.record_rows(chain.batch.batch_id, "", None, None,
                                actor=fakes.PRINCIPALS[fakes.REGULATOR_OTHER_PROVINCE])


def test_rows_of_a_batch_within_a_range(interchange: Interchange, chain: Chain) -> None:
    rows = list(interchange.record_rows(
        chain.batch.batch_id, "", datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 14, 0, tzinfo=UTC)))

    assert [row[4] for row in rows] == ["SHIPPED", "RECEIVED"]


def test_rows_of_several_batches_interleave_in_time_order(
    service: FlowService, interchange: Interchange, clock: Any
) -> None:
    first = service.create_batch("req-first", BatchInput(
        COOP, TOMATO, "", "20", "KG", date(2024, 4, 30), "", None)).value
    clock.advance(hours=1)
    second = service.create_batch("req-second", BatchInput(
        COOP, TOMATO, "", "30", "KG", date(2024, 4, 30), "", None)).value
    clock.advance(hours=1)
    service.record_shipment("req-ship", ShipmentInput(
        first.batch_id, COOP, MARKET, (), "20", "KG", None, ""))

    rows = list(interchange.record_rows("", TOMATO, None, None))

    assert [(row[0], row[1], row[4]) for row in rows] == [
        ("2024-05-01T08:00:00+00:00", first.batch_id, "CREATED"),
        ("2024-05-01T09:00:00+00:00", second.batch_id, "CREATED"),
        ("2024-05-01T10:00:00+00:00", first.batch_id, "SHIPPED"),
    ]
