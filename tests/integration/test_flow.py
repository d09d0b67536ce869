"""The flow service end to end, in both run modes (see conftest.platform): a cross-province
chain from a Shandong vegetable cooperative through a Beijing wholesale market to two
retailers, one of which repacks into new codes; refusals; retries; a cut capture stream."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from agritrace.coding.v1 import coding_pb2 as cpb
from agritrace.flow.v1 import flow_pb2 as pb
from agritrace.flow.v1 import flow_pb2_grpc
from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace_registry.domain import identifiers
from agritrace_testing.chain import (
    TOMATO,
    Chain,
    build_chain,
    day,
    party,
    rid,
    tomato_batch,
    trace,
)
from agritrace_testing.grpc_errors import error_reason, violations

pytestmark = pytest.mark.integration


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value


@pytest.fixture(scope="module")
def chain(platform) -> Chain:  # type: ignore[no-untyped-def]
    return build_chain(platform)


def history_kinds(stub: flow_pb2_grpc.FlowServiceStub, batch_id: str) -> list[str]:
    kinds, token = [], ""
    while True:
        page = stub.ListBatchHistory(pb.ListBatchHistoryRequest(
            batch_id=batch_id, page_size=4, page_token=token))
        kinds.extend(record.kind for record in page.records)
        token = page.next_page_token
        if not token:
            return kinds


def test_the_cross_province_chain(platform, chain: Chain) -> None:  # type: ignore[no-untyped-def]
    coop, b, batch_id, codes = chain.coop, chain.retailer_b, chain.batch_id, chain.codes
    batch = coop.flow.GetBatch(pb.GetBatchRequest(batch_id=batch_id)).batch
    assert batch.category == "PLANT/VEGETABLE/SOLANACEOUS" and batch.code_count == 10
    assert batch.certificate.contact_phone == "139****1234"
    assert batch.batch_id.startswith("B37") and not batch.flags
    scanned = coop.coding.VerifyCode(cpb.VerifyCodeRequest(code=codes[0]))
    assert scanned.state == cpb.CODE_STATE_ACTIVE and scanned.product_batch_id == batch_id

    # Production records from Shandong's platform raised no flag; re-sending one changed
    # nothing.
    assert chain.trace_flags == [[], [], []] and chain.trace_replayed
    # The market's scan confirmed the cooperative's shipment; its gate admitted the goods.
    assert chain.received.shipment_id == chain.to_market.shipment_id
    assert chain.received.HasField("receive_time")
    assert chain.to_market.buyer_subject_id == chain.market.subject_id
    assert chain.entry.admitted and chain.entry.batch_id == batch_id
    # Retailer B's repack derived new codes from the ones it received.
    repacked = chain.repacked
    assert len(repacked.output_codes) == 3
    assert list(repacked.output.parent_batch_ids) == [batch_id]
    lineage = b.coding.GetLineage(cpb.GetLineageRequest(code=repacked.output_codes[0]))
    assert sorted(lineage.ancestors[0].parent_codes) == sorted(codes[4:6])
    assert b.coding.VerifyCode(cpb.VerifyCodeRequest(code=codes[4])).state == \
        cpb.CODE_STATE_CONSUMED

    kinds = Counter(history_kinds(coop.flow, batch_id))
    assert kinds["CREATED"] == 1 and kinds["INTERNAL_TRACE"] == 3
    assert kinds["SHIPPED"] >= 3 and kinds["RECEIVED"] == 3 and kinds["MARKET_ENTRY"] >= 1
    assert kinds["TRANSFORMED_INTO"] == 1
    assert history_kinds(b.flow, repacked.output.batch_id) == ["TRANSFORMED_FROM"]


def test_a_pesticide_inside_its_interval_flags_the_batch(  # type: ignore[no-untyped-def]
    platform, chain: Chain,
) -> None:
    harvested = datetime.now(UTC) - timedelta(days=1)
    batch = chain.coop.flow.CreateBatch(tomato_batch(chain.coop, [], harvested, "50")).batch
    flags = chain.admin.RecordInternalTrace(trace(
        batch.batch_id, rid("SD"), harvested - timedelta(days=2),
        pesticide=pb.Pesticide(name="吡虫啉", pre_harvest_interval_days=7))).flags
    assert list(flags) == ["PESTICIDE_INTERVAL_NOT_PASSED"]
    assert list(chain.coop.flow.GetBatch(pb.GetBatchRequest(
        batch_id=batch.batch_id)).batch.flags) == ["PESTICIDE_INTERVAL_NOT_PASSED"]


def test_refusals_are_clear_and_write_nothing(platform, chain: Chain) -> None:  # type: ignore[no-untyped-def]
    coop, market, a = chain.coop, chain.market, chain.retailer_a
    before = history_kinds(coop.flow, chain.batch_id)

    # Receipt of goods never shipped to you (code 9 never left the cooperative).
    refused = rpc_error(a.flow.ConfirmReceipt, pb.ConfirmReceiptRequest(
        request_id=rid("recv"), buyer_subject_id=a.subject_id, code=chain.codes[9]))
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(refused) == "NOT_SHIPPED_TO_YOU"

    # A shipment of more than the seller holds (the cooperative kept 400 of 1000 kg).
    too_much = rpc_error(coop.flow.RecordShipment, pb.RecordShipmentRequest(
        request_id=rid("ship"), shipment=pb.Shipment(
            batch_id=chain.batch_id, seller_subject_id=coop.subject_id,
            buyer_subject_id=market.subject_id,
            quantity=pb.Quantity(amount="400.001", unit="KG"))))
    assert error_reason(too_much) == "INSUFFICIENT_QUANTITY"

    # A transformation that does not balance (400 kg in, 500 kg out).
    unbalanced = rpc_error(coop.flow.RecordTransformation, pb.RecordTransformationRequest(
        request_id=rid("merge"), subject_id=coop.subject_id,
        kind=pb.TRANSFORMATION_KIND_MERGE,
        inputs=[pb.TransformationInput(batch_id=chain.batch_id,
                                       quantity=pb.Quantity(amount="400", unit="KG"))],
        output=pb.Batch(product_code=TOMATO, quantity=pb.Quantity(amount="500", unit="KG"),
                        production_date=day(datetime.now(UTC)))))
    assert error_reason(unbalanced) == "TRANSFORMATION_UNBALANCED"

    # Records for unknown subjects, and bad input naming its field.
    unknown = rpc_error(chain.admin.RecordShipment, pb.RecordShipmentRequest(
        request_id=rid("ship"), shipment=pb.Shipment(
            batch_id=chain.batch_id, seller_subject_id=coop.subject_id,
            buyer_subject_id=identifiers.new_subject_id("11"),
            quantity=pb.Quantity(amount="1", unit="KG"))))
    assert unknown.code() is grpc.StatusCode.NOT_FOUND
    assert error_reason(unknown) == "SUBJECT_NOT_FOUND"
    malformed = rpc_error(chain.admin.RecordShipment, pb.RecordShipmentRequest(
        request_id=rid("ship"), shipment=pb.Shipment(
            batch_id=chain.batch_id, seller_subject_id=coop.subject_id,
            buyer_subject_id="nobody", quantity=pb.Quantity(amount="1", unit="KG"))))
    assert "shipment.buyer_subject_id" in violations(malformed)
    bad = rpc_error(coop.flow.CreateBatch, pb.CreateBatchRequest(
        request_id=rid("batch"), batch=pb.Batch(
            subject_id=coop.subject_id, product_code="0104", quantity=pb.Quantity(
                amount="-3", unit="KG"), production_date=day(datetime.now(UTC)))))
    assert {"batch.product_code", "batch.quantity.amount"} <= set(violations(bad))
    assert history_kinds(coop.flow, chain.batch_id) == before

    # A market entry with a void code is refused with its reason, and recorded.
    coop.coding.VoidCodes(cpb.VoidCodesRequest(request_id=rid("void"), codes=chain.codes[8:9],
                                               reason="label torn"))
    gate = market.flow.RecordMarketEntry(pb.RecordMarketEntryRequest(
        request_id=rid("gate"), market_subject_id=market.subject_id, code=chain.codes[8]))
    assert not gate.entry.admitted and gate.entry.refusal == pb.ENTRY_REFUSAL_VOID
    # Goods of the batch shipped to someone else are refused at another market's gate.
    other_market = party(platform, "110102", "西城农贸市场", rpb.SUBJECT_KIND_WHOLESALE_MARKET)
    elsewhere = other_market.flow.RecordMarketEntry(pb.RecordMarketEntryRequest(
        request_id=rid("gate"), market_subject_id=other_market.subject_id,
        code=chain.codes[7]))
    assert elsewhere.entry.refusal == pb.ENTRY_REFUSAL_SHIPPED_TO_SOMEONE_ELSE


def test_retries_change_nothing(platform, chain: Chain) -> None:  # type: ignore[no-untyped-def]
    coop, market = chain.coop, chain.market
    ship = pb.RecordShipmentRequest(request_id=rid("ship"), shipment=pb.Shipment(
        batch_id=chain.batch_id, seller_subject_id=coop.subject_id,
        buyer_subject_id=market.subject_id, quantity=pb.Quantity(amount="10", unit="KG")))
    first = coop.flow.RecordShipment(ship)
    again = coop.flow.RecordShipment(ship)
    assert again.replayed and again.shipment.shipment_id == first.shipment.shipment_id
    gate = pb.RecordMarketEntryRequest(request_id=rid("gate"),
                                       market_subject_id=market.subject_id,
                                       code=chain.codes[1])
    assert market.flow.RecordMarketEntry(gate).entry.entry_id == \
        market.flow.RecordMarketEntry(gate).entry.entry_id
    kinds = Counter(history_kinds(coop.flow, chain.batch_id))
    retried = market.flow.RecordMarketEntry(gate)
    assert retried.replayed
    assert Counter(history_kinds(coop.flow, chain.batch_id)) == kinds


def test_a_capture_stream_cut_midway_and_sent_again_stores_each_record_once(  # type: ignore[no-untyped-def]
    platform, chain: Chain,
) -> None:
    harvested = datetime.now(UTC) - timedelta(days=2)
    batch = chain.coop.flow.CreateBatch(tomato_batch(chain.coop, [], harvested, "80")).batch
    records = [pb.CaptureRecord(internal_trace=trace(
        batch.batch_id, f"SD-CAP-{batch.batch_id}-{n:03d}", harvested - timedelta(days=30 - n),
        fertiliser=pb.Fertiliser(name="有机肥", amount=pb.Quantity(amount="20", unit="KG"))))
        for n in range(30)]
    messages = [pb.CaptureRecordsRequest(records=records[i:i + 10]) for i in range(0, 30, 10)]

    answered = threading.Semaphore(0)

    def cut() -> Iterator[pb.CaptureRecordsRequest]:
        for message in messages[:2]:
            yield message
            answered.acquire()  # the server has stored and answered this message
        raise RuntimeError("the bridge's link drops")

    answers = chain.admin.CaptureRecords(cut())
    with pytest.raises(grpc.RpcError):
        for _ in answers:
            answered.release()
    again = list(chain.admin.CaptureRecords(iter(messages)))
    outcomes = Counter(result.outcome for answer in again for result in answer.results)
    assert outcomes["STORED"] + outcomes["REPLAYED"] == 30 and not outcomes["REFUSED"]
    assert outcomes == {"REPLAYED": 20, "STORED": 10}  # the two answered messages were kept
    kinds = Counter(history_kinds(chain.coop.flow, batch.batch_id))
    assert kinds == {"CREATED": 1, "INTERNAL_TRACE": 30}


def test_epcis_export_validates_and_imports_round_trip(  # type: ignore[no-untyped-def]
    platform, chain: Chain,
) -> None:
    """The chain's EPCIS export validates against the official GS1 schema; a partner's
    document imports once (a second import replays), refusing what does not map."""
    import json
    from pathlib import Path

    import jsonschema

    schema = json.loads((Path(__file__).parents[2] / "services/flow/agritrace_flow/adapters/"
                         "epcis_schema/EPCIS-JSON-Schema.json").read_text())
    exported = chain.coop.flow.ExportEpcis(pb.ExportEpcisRequest(batch_id=chain.batch_id))
    document = json.loads(exported.document)
    jsonschema.validate(document, schema)
    types = Counter(event["type"] for event in document["epcisBody"]["eventList"])
    assert types["TransformationEvent"] == 1 and exported.event_count == sum(types.values())
    steps = Counter(event.get("bizStep") for event in document["epcisBody"]["eventList"])
    kinds = Counter(history_kinds(chain.coop.flow, chain.batch_id))
    assert (steps["shipping"], steps["receiving"]) == (kinds["SHIPPED"], kinds["RECEIVED"])
    assert steps["commissioning"] == 1 and steps["accepting"] >= 1  # created; admitted

    examples = Path(__file__).parents[2] / "services/flow/tests/unit/epcis_examples"
    shipping = (examples / "Example_9.6.1-ObjectEvent.jsonld").read_bytes()
    first = chain.market.flow.ImportEpcis(pb.ImportEpcisRequest(
        document=shipping, subject_id=chain.market.subject_id))
    again = chain.market.flow.ImportEpcis(pb.ImportEpcisRequest(
        document=shipping, subject_id=chain.market.subject_id))
    assert [r.outcome for r in first.results] in (["STORED", "STORED"],
                                                  ["REPLAYED", "REPLAYED"])
    assert [r.outcome for r in again.results] == ["REPLAYED", "REPLAYED"]
    aggregation = (examples / "Example_9.6.3-AggregationEvent.jsonld").read_bytes()
    refused = chain.market.flow.ImportEpcis(pb.ImportEpcisRequest(
        document=aggregation, subject_id=chain.market.subject_id))
    assert [r.outcome for r in refused.results] == ["REFUSED"]
    assert "AggregationEvent" in refused.results[0].reason
    broken = rpc_error(chain.market.flow.ImportEpcis, pb.ImportEpcisRequest(
        document=b"{not json", subject_id=chain.market.subject_id))
    assert "document" in violations(broken)


def test_the_recall_spreadsheet(platform, chain: Chain) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    from openpyxl import load_workbook

    inspector = flow_pb2_grpc.FlowServiceStub(platform.channel_as(
        platform.new_regulator("37"), platform.flow_address))
    data = b"".join(c.data for c in inspector.ExportRecords(pb.ExportRecordsRequest(
        batch_id=chain.batch_id, format=pb.SHEET_FORMAT_CSV)))
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:5] == ["time", "batch_id", "product_code", "product_name", "record"]
    body = rows[1:]
    assert body == sorted(body) and {r[4] for r in body} >= {"CREATED", "SHIPPED",
                                                              "RECEIVED", "TRANSFORMED_FROM"}
    workbook = b"".join(c.data for c in inspector.ExportRecords(pb.ExportRecordsRequest(
        product_code=TOMATO, format=pb.SHEET_FORMAT_XLSX)))
    sheet = load_workbook(io.BytesIO(workbook), read_only=True).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "time" and len(values) > len(body)
    outsider = flow_pb2_grpc.FlowServiceStub(platform.channel_as(
        platform.new_regulator("44"), platform.flow_address))
    denied = rpc_error(lambda: b"".join(c.data for c in outsider.ExportRecords(
        pb.ExportRecordsRequest(batch_id=chain.batch_id, format=pb.SHEET_FORMAT_CSV))))
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
