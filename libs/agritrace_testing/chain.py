"""The cross-province chain the flow and query integration tests share: a Shandong vegetable
cooperative harvests with production records from its province, ships to a Beijing wholesale
market (receipt and market entry by scan), which sells on to two retailers; one repacks into
new codes. Every step goes through gRPC as the party that would do it.

`platform` is tests/integration/conftest.py's running Platform (channels, accounts)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2

from agritrace.coding.v1 import coding_pb2 as cpb
from agritrace.coding.v1 import coding_pb2_grpc
from agritrace.flow.v1 import flow_pb2 as pb
from agritrace.flow.v1 import flow_pb2_grpc
from agritrace.registry.v1 import registry_pb2 as rpb

TOMATO = "010403001"
SHOUGUANG, FENGTAI, CHAOYANG, HAIDIAN = "370783", "110106", "110105", "110108"

def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def day(value: datetime) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"

@dataclass(frozen=True)
class Party:
    """A subject with its operator's stubs."""

    subject_id: str
    flow: flow_pb2_grpc.FlowServiceStub
    coding: coding_pb2_grpc.CodingServiceStub
    token: str  # its operator's access token, for other services' stubs
    username: str  # its operator's sign-in name (password: the client's user_password)


def party(platform: Any, county: str, name: str, kind: int) -> Party:
    account = platform.new_operator(county, name=name, kind=kind)
    flow_channel = platform.channel_as(account.token, platform.flow_address)
    coding_channel = platform.coding_channel_as(account.token)
    return Party(account.subject_id,
                 flow_pb2_grpc.FlowServiceStub(flow_channel),  # type: ignore[no-untyped-call]
                 coding_pb2_grpc.CodingServiceStub(coding_channel),  # type: ignore[no-untyped-call]
                 account.token, account.username)


def printed_codes(producer: Party, count: int) -> list[str]:
    codes = [c.code for c in producer.coding.IssueCodes(cpb.IssueCodesRequest(
        request_id=rid("issue"), subject_id=producer.subject_id, mode=cpb.ISSUE_MODE_ONLINE,
        quantity=count)).codes]
    producer.coding.MarkCodesPrinted(cpb.MarkCodesPrintedRequest(request_id=rid("print"),
                                                                 codes=codes))
    return codes


def tomato_batch(producer: Party, codes: list[str], harvested: datetime,
                 amount: str = "1000") -> pb.CreateBatchRequest:
    return pb.CreateBatchRequest(request_id=rid("batch"), codes=codes, batch=pb.Batch(
        subject_id=producer.subject_id, product_code=TOMATO, product_name="寿光番茄",
        quantity=pb.Quantity(amount=amount, unit="KG"), production_date=day(harvested),
        origin_division=SHOUGUANG, certificate=pb.Certificate(
            producer_name="寿光市绿源蔬菜专业合作社", contact_phone="13905361234",
            issue_date=day(harvested),
            commitment="不使用禁限用农药兽药、不超标使用常规农药兽药、严格执行安全间隔期",
            basis=pb.CERTIFICATE_BASIS_SELF_TEST, test_result="农残速测 合格")))


def trace(batch_id: str, record_id: str, when: datetime, **activity: object
          ) -> pb.RecordInternalTraceRequest:
    return pb.RecordInternalTraceRequest(record=pb.InternalTraceRecord(
        source_province="37", source_record_id=record_id, batch_id=batch_id,
        occur_time=stamp(when), **activity))  # type: ignore[arg-type]


@dataclass
class Chain:
    coop: Party
    market: Party
    retailer_a: Party
    retailer_b: Party
    admin: flow_pb2_grpc.FlowServiceStub
    batch_id: str
    codes: list[str]
    trace_flags: list[list[str]]
    trace_replayed: bool
    to_market: pb.Shipment
    received: pb.Shipment
    entry: pb.MarketEntry
    repacked: pb.RecordTransformationResponse


def build_chain(platform: Any) -> Chain:
    """Shandong → Beijing, recorded step by step through gRPC: a cooperative in Shouguang
    harvests tomatoes with production records from Shandong's platform, ships 600 kg to the
    Xinfadi wholesale market, which confirms by scan, admits the goods at its gate and sells
    on to two retailers; one of them repacks into boxes with new codes. Tests assert on it."""
    coop = party(platform, SHOUGUANG, "寿光市绿源蔬菜专业合作社", rpb.SUBJECT_KIND_COOPERATIVE)
    market = party(platform, FENGTAI, "北京新发地农产品批发市场",
                   rpb.SUBJECT_KIND_WHOLESALE_MARKET)
    a = party(platform, CHAOYANG, "朝阳生鲜超市", rpb.SUBJECT_KIND_RETAILER)
    b = party(platform, HAIDIAN, "海淀社区菜店", rpb.SUBJECT_KIND_RETAILER)
    admin_channel = platform.channel_as(platform.admin_token, platform.flow_address)
    admin = flow_pb2_grpc.FlowServiceStub(admin_channel)  # type: ignore[no-untyped-call]
    harvested = datetime.now(UTC) - timedelta(days=3)
    codes = printed_codes(coop, 10)
    batch_id = coop.flow.CreateBatch(tomato_batch(coop, codes, harvested)).batch.batch_id

    records = [
        trace(batch_id, f"SD-{batch_id}-1", harvested - timedelta(days=20),
              pesticide=pb.Pesticide(name="阿维菌素", registration_number="PD20080123",
                                     pre_harvest_interval_days=7,
                                     amount=pb.Quantity(amount="0.5", unit="L"))),
        trace(batch_id, f"SD-{batch_id}-2", harvested, harvest=pb.Harvest(
            quantity=pb.Quantity(amount="1000", unit="KG"))),
        trace(batch_id, f"SD-{batch_id}-3", harvested + timedelta(hours=2),
              inspection=pb.Inspection(item="有机磷农药残留", passed=True, result="阴性",
                                       inspector="寿光市农检站")),
    ]
    trace_flags = [list(admin.RecordInternalTrace(record).flags) for record in records]
    trace_replayed = admin.RecordInternalTrace(records[0]).replayed

    to_market = coop.flow.RecordShipment(pb.RecordShipmentRequest(
        request_id=rid("ship"), shipment=pb.Shipment(
            batch_id=batch_id, seller_subject_id=coop.subject_id,
            buyer_subject_id=market.subject_id, codes=codes[:6],
            quantity=pb.Quantity(amount="600", unit="KG"),
            transport_document="SD-WB-0815"))).shipment
    received = market.flow.ConfirmReceipt(pb.ConfirmReceiptRequest(
        request_id=rid("recv"), buyer_subject_id=market.subject_id, code=codes[0])).shipment
    entry = market.flow.RecordMarketEntry(pb.RecordMarketEntryRequest(
        request_id=rid("gate"), market_subject_id=market.subject_id, code=codes[1])).entry
    for retailer, sold, amount in ((a, codes[2:4], "200"), (b, codes[4:6], "300")):
        market.flow.RecordShipment(pb.RecordShipmentRequest(
            request_id=rid("ship"), shipment=pb.Shipment(
                batch_id=batch_id, seller_subject_id=market.subject_id,
                buyer_subject_id=retailer.subject_id, codes=sold,
                quantity=pb.Quantity(amount=amount, unit="KG"))))
        retailer.flow.ConfirmReceipt(pb.ConfirmReceiptRequest(
            request_id=rid("recv"), buyer_subject_id=retailer.subject_id, code=sold[0]))
    repacked = b.flow.RecordTransformation(pb.RecordTransformationRequest(
        request_id=rid("repack"), subject_id=b.subject_id,
        kind=pb.TRANSFORMATION_KIND_REPACK,
        inputs=[pb.TransformationInput(batch_id=batch_id,
                                       quantity=pb.Quantity(amount="300", unit="KG"),
                                       codes=codes[4:6])],
        output=pb.Batch(product_code=TOMATO, product_name="精品番茄礼盒",
                        quantity=pb.Quantity(amount="300", unit="KG"),
                        production_date=day(datetime.now(UTC)), origin_division=HAIDIAN),
        output_code_count=3))
    return Chain(coop, market, a, b, admin, batch_id, codes, trace_flags, trace_replayed,
                 to_market, received, entry, repacked)
