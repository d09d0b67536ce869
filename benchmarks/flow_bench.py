"""The flow service's benchmarks (issue #5), against the all-in-one platform process
(`python -m agritrace_platform`: sso + registry + coding + flow + query in one process) on a
throwaway PostgreSQL database, called as the administrator (OPS_ADMIN may send any
province's production records), as a provincial bridge would call it. The query read model's
projections of the stream's events run in the same process (in-process events), so the
platform's CPU includes them:

9. CaptureRecords of N mixed records (default 200,000), streamed in messages of 5,000, timed
   from the client; every record must come back STORED. The mix (seeded):
     - 1% CreateBatch: tomato (010403001, 寿光番茄) of a cooperative in 寿光市 (370783), origin
       370783, 2,000-20,000 kg, no codes, with a compliance certificate (process control);
     - 1% RecordShipment: a quantity (30-90%) of a batch, no codes, from the cooperative to a
       second registered subject, a wholesale market in 北京市丰台区 (110106);
     - 98% RecordInternalTrace of province 37: fertiliser 30%, harvest 25%, pesticide 20%
       (pre-harvest interval 1, 3, 7 or 14 days), inspection 20% (0.5% failed), planting 5%.
   The province's batches in progress: as many batches as the stream creates are created
   before it (untimed, through the same CaptureRecords), so records have batches to refer to
   from the first message; traces pick a batch in progress at random, shipments take the
   oldest batch in progress (it leaves the pool: no records after its shipment). A record
   refers only to batches whose creation was answered two messages before (batch ids are
   assigned by the server; the client fills them in when it sends the message).
   Layout (--flow-layout): `interleaved` (default) keeps the records of a message in the
   order they happened, the kinds mixed at random positions, as a bridge forwarding records
   as they arrive sends them; `grouped` sends each message's batches, then its shipments,
   then its production records, as a bridge syncing table by table does. The service stores
   a message's production records together after its other records, in one transaction
   (record_internal_traces), and each run of batches and shipments in a message together, in
   order, in one transaction (record_batches_and_shipments).
   Baseline, measured in the same run: one COPY (+ commit) of the rows the service ends up
   storing for the stream (internal_traces, batch_history, batches, holdings, shipments,
   request_log, event_outbox: same columns, similar content, one outbox event per message's
   production records) into tables `LIKE flow.<table> INCLUDING ALL`.
   It leaves out what the service does besides inserting: reads, the UPDATEs of flags and
   holdings, the outbox relay marking events published.
   The records are streamed from pre-built messages (only the batch ids are filled in at
   send time); the client's CPU is printed next to the server's and PostgreSQL's.
   The server's wall time is split by record kind with py-spy (if found next to the Python
   running the benchmark, or on PATH; --no-flow-profile turns it off): it samples the
   platform 100 times a second without pausing it (--nonblocking --idle), and the samples
   of the CaptureRecords thread are charged to the servicer function on their stack; the
   shares of the main parts of the work (reading the records that can flag a batch, the
   commit and its outbox INSERTs, look-ups...) are printed too.
10. ListBatchHistory of a batch with 1,000 history entries (created, then 999 production
   records sent through CaptureRecords): page_size 1000, the whole history in one call,
   latency p50/p99 over --history-calls sequential calls, next to a psycopg SELECT of the
   same 1,000 rows (the repository's query) on one open connection.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2

from agritrace.flow.v1 import flow_pb2 as pb
from agritrace.flow.v1 import flow_pb2_grpc
from benchmarks.cpu import CpuSample
from benchmarks.import_bench import CHANNEL_OPTIONS, LatencyResult, summarise
from benchmarks.infra import RESULTS_DIR, Platform, ThrowawayDatabase, log, start_platform

if TYPE_CHECKING:
    from rich.console import Console

    from benchmarks.run import Report

MAX_MESSAGE = 5000  # the most records one CaptureRecordsRequest may carry
LAG = 2  # a record may refer to batches created up to this many messages before its own
RATE_GOAL = 10_000.0  # records per second, end to end
STREAM_TIMEOUT = 3600.0
BATCH_SHARE = SHIPMENT_SHARE = 0.01
PROVINCE = "37"
COUNTY = "370783"  # 山东省寿光市
BUYER_COUNTY = "110106"  # 北京市丰台区 (新发地)
PRODUCT_CODE, PRODUCT_NAME, CATEGORY = "010403001", "寿光番茄", "PLANT/VEGETABLE/SOLANACEOUS"
PRODUCER = "寿光市绿源蔬菜专业合作社"
PHONE = "13805361234"
COMMITMENT = "不使用禁限用农药兽药、停用兽药和非法添加物，常规农药兽药残留不超标"
SEASON_DAYS = 150  # the stream's records happened over the last 150 days
GROW_DAYS = 90  # a batch's production date: its creation + 90 days (or today)
HISTORY_ENTRIES = 1000
LAYOUTS = ("interleaved", "grouped")
# (activity, weight %) of the production records
ACTIVITIES = (("fertiliser", 30), ("harvest", 25), ("pesticide", 20), ("inspection", 20),
              ("planting", 5))
FAILED_INSPECTION_SHARE = 0.005
# py-spy frames of the servicer: which kind of record the CaptureRecords thread works on.
# A run of batches and shipments is handled together: its bulk reads and writes (preload,
# apply, commit) count for "stream"; the "batches and shipments" part below is the whole run.
PROFILE_KINDS = {"batch": ("FlowService._batch_step (", "FlowService._finish_batch ("),
                 "shipment": ("FlowService._shipment_step (", "FlowService._finish_shipment ("),
                 "internal_trace": ("FlowServicer._traces (",)}
# What the thread's time went to (inclusive: a sample counts for every frame on its stack).
PROFILE_PARTS = (("batches and shipments", "FlowServicer._run ("),
                 ("applications", "SqlAlchemyFlowStore.applications ("),
                 ("commit", "SqlAlchemyUnitOfWork.commit ("),
                 ("of which outbox INSERTs", "EventStore.append_outbox ("),
                 ("find_traces", "SqlAlchemyFlowStore.find_traces ("),
                 ("batch_flags", "SqlAlchemyFlowStore.batch_flags ("),
                 ("add_traces (COPY)", "SqlAlchemyFlowStore.add_traces ("),
                 ("add_history", "SqlAlchemyFlowStore.add_history ("),
                 ("set_flag_states", "SqlAlchemyFlowStore.set_flag_states ("),
                 ("flags_after", "flags_after ("),
                 ("trace_input", "trace_input ("),
                 ("subject look-ups", "FlowService._subject ("))
KIND_NAMES = {"batch": "CreateBatch", "shipment": "RecordShipment",
              "internal_trace": "RecordInternalTrace"}
# The tables the service writes for the stream, and the columns the baseline COPYs into them
# (serial keys left to their defaults, as the service leaves them).
TABLES: dict[str, tuple[str, ...]] = {
    "internal_traces": ("source_province", "source_record_id", "batch_id", "activity",
                        "occurred_at", "details", "interval_days", "passed"),
    "batch_history": ("batch_id", "occurred_at", "kind", "subject_id", "other_subject_id",
                      "record_id", "summary"),
    "batches": ("batch_id", "subject_id", "subject_division", "product_code", "product_name",
                "category", "amount", "unit", "production_date", "origin_division",
                "certificate_id", "producer_name", "contact_phone_masked",
                "certificate_issue_date", "commitment", "certificate_basis", "test_result",
                "parent_batch_ids", "flags", "code_count", "created_at"),
    "holdings": ("batch_id", "subject_id", "amount", "unit"),
    "shipments": ("shipment_id", "batch_id", "seller_subject_id", "buyer_subject_id", "codes",
                  "amount", "unit", "ship_time", "transport_document", "received_at"),
    "request_log": ("request_id", "operation", "fingerprint", "result_id", "created_at"),
    "event_outbox": ("event_id", "source", "name", "payload", "trace_context", "occurred_at",
                     "published_at"),
}
COPY_BLOCK = 20_000  # rows per copy.write
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# -- the records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSpec:
    slot: int  # index into the run's list of batch ids
    request_id: str
    amount: int  # kg
    production_date: date
    created: datetime  # when the bridge saw it (the service stamps its own clock)


@dataclass(frozen=True)
class ShipmentSpec:
    slot: int
    request_id: str
    amount: int  # kg
    ship_time: datetime
    document: str


@dataclass(frozen=True)
class TraceSpec:
    slot: int
    record_id: str
    activity: str  # the oneof field
    occurred_at: datetime
    details: dict[str, str]
    interval_days: int
    passed: bool


Spec = BatchSpec | ShipmentSpec | TraceSpec


def _kind(spec: Spec) -> str:
    return ("batch" if isinstance(spec, BatchSpec)
            else "shipment" if isinstance(spec, ShipmentSpec) else "internal_trace")


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _date(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def _activity(rng: random.Random, name: str) -> tuple[dict[str, str], int, bool]:
    """A production record's content: (details as the service stores them, interval days,
    passed)."""
    if name == "fertiliser":
        return {"amount": f"{rng.choice((25, 40, 50, 80))} KG",
                "name": "硫酸钾型复合肥 15-15-15"}, 0, True
    if name == "harvest":
        return {"quantity": f"{rng.randrange(200, 1500)} KG"}, 0, True
    if name == "pesticide":
        return ({"amount": "0.2 KG", "name": "吡虫啉 10%可湿性粉剂",
                 "registration_number": "PD20070346"}, rng.choice((1, 3, 7, 14)), True)
    if name == "inspection":
        passed = rng.random() >= FAILED_INSPECTION_SHARE
        return ({"inspector": "寿光市农产品质量安全检测站",
                 "item": "有机磷和氨基甲酸酯类农药残留速测",
                 "result": "抑制率 12%，阴性" if passed else "抑制率 63%，阳性"}, 0, passed)
    return {"area_mu": "3.5", "variety": rng.choice(("普罗旺斯", "粉冠一号", "金棚十号"))}, 0, True


def _kg(text: str) -> pb.Quantity:
    return pb.Quantity(amount=text.split()[0], unit="KG")


def _activity_message(spec: TraceSpec) -> Any:
    """The activity message carrying exactly the spec's details."""
    d = spec.details
    if spec.activity == "fertiliser":
        return pb.Fertiliser(name=d["name"], amount=_kg(d["amount"]))
    if spec.activity == "harvest":
        return pb.Harvest(quantity=_kg(d["quantity"]))
    if spec.activity == "pesticide":
        return pb.Pesticide(name=d["name"], registration_number=d["registration_number"],
                            amount=_kg(d["amount"]),
                            pre_harvest_interval_days=spec.interval_days)
    if spec.activity == "inspection":
        return pb.Inspection(item=d["item"], passed=spec.passed, result=d["result"],
                             inspector=d["inspector"])
    return pb.Planting(variety=d["variety"], area_mu=d["area_mu"])


def _certificate(issue: date) -> pb.Certificate:
    return pb.Certificate(producer_name=PRODUCER, contact_phone=PHONE, issue_date=_date(issue),
                          commitment=COMMITMENT, basis=pb.CERTIFICATE_BASIS_PROCESS_CONTROL)


def _record(spec: Spec, seller: str, buyer: str) -> pb.CaptureRecord:
    """The capture record of a spec; batch ids are filled in when the message is sent."""
    if isinstance(spec, BatchSpec):
        return pb.CaptureRecord(batch=pb.CreateBatchRequest(
            request_id=spec.request_id, batch=pb.Batch(
                subject_id=seller, product_code=PRODUCT_CODE, product_name=PRODUCT_NAME,
                quantity=pb.Quantity(amount=str(spec.amount), unit="KG"),
                production_date=_date(spec.production_date), origin_division=COUNTY,
                certificate=_certificate(spec.created.date()))))
    if isinstance(spec, ShipmentSpec):
        return pb.CaptureRecord(shipment=pb.RecordShipmentRequest(
            request_id=spec.request_id, shipment=pb.Shipment(
                seller_subject_id=seller, buyer_subject_id=buyer,
                quantity=pb.Quantity(amount=str(spec.amount), unit="KG"),
                ship_time=_timestamp(spec.ship_time), transport_document=spec.document)))
    record = pb.InternalTraceRecord(source_province=PROVINCE, source_record_id=spec.record_id,
                                    occur_time=_timestamp(spec.occurred_at))
    getattr(record, spec.activity).CopyFrom(_activity_message(spec))
    return pb.CaptureRecord(internal_trace=pb.RecordInternalTraceRequest(record=record))


@dataclass
class Plan:
    """The setup batches and the measured stream, built before anything is timed."""

    seller: str
    buyer: str
    setup: list[BatchSpec]
    messages: list[list[Spec]]
    requests: list[pb.CaptureRecordsRequest] = field(default_factory=list)
    setup_requests: list[pb.CaptureRecordsRequest] = field(default_factory=list)
    slots: int = 0  # batch slots: setup batches first, then the stream's

    @property
    def records(self) -> int:
        return sum(len(message) for message in self.messages)

    def kinds(self) -> Counter[str]:
        return Counter(_kind(spec) for message in self.messages for spec in message)

    def trace_runs(self) -> list[list[TraceSpec]]:
        """The production records the servicer stores together: those of each message."""
        runs = [[spec for spec in message if isinstance(spec, TraceSpec)]
                for message in self.messages]
        return [run for run in runs if run]


def build_plan(records: int, seed: int, seller: str, buyer: str, layout: str) -> Plan:
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    start = now - timedelta(days=SEASON_DAYS)
    batches = max(1, round(records * BATCH_SHARE))
    shipments = max(1, round(records * SHIPMENT_SHARE))
    traces = records - batches - shipments
    if traces < 1:
        raise ValueError("too few records for the mix")

    def batch_spec(slot: int, at: datetime) -> BatchSpec:
        produced = min((at + timedelta(days=GROW_DAYS)).date(), today)
        return BatchSpec(slot, f"bench-{tag}-batch-{slot}", rng.randrange(2000, 20001),
                         produced, at)

    setup = [batch_spec(slot, start - timedelta(days=30)) for slot in range(batches)]
    amounts = {spec.slot: spec.amount for spec in setup}
    kinds = ["batch"] * batches + ["shipment"] * shipments + ["internal_trace"] * traces
    rng.shuffle(kinds)
    names = [name for name, _ in ACTIVITIES]
    weights = [weight for _, weight in ACTIVITIES]
    active: list[int] = list(range(batches))  # batches in progress, oldest first
    pending: list[tuple[int, int]] = []  # (message it becomes usable in, slot)
    messages: list[list[Spec]] = []
    slot = batches
    for first in range(0, records, MAX_MESSAGE):
        number = len(messages)
        active.extend(s for m, s in pending if m <= number)
        pending = [(m, s) for m, s in pending if m > number]
        shipped: list[int] = []
        message: list[Spec] = []
        for position in range(first, min(first + MAX_MESSAGE, records)):
            at = start + timedelta(seconds=SEASON_DAYS * 86400 * position / records
                                   + rng.uniform(0, 60))
            kind = kinds[position]
            spec: Spec
            if kind == "batch":
                spec = created = batch_spec(slot, at)
                amounts[slot] = created.amount
                pending.append((number + LAG, slot))
                slot += 1
            elif kind == "shipment":
                chosen = next((s for s in active if s not in shipped), None)
                if chosen is None:
                    raise ValueError("no batch in progress left to ship")
                shipped.append(chosen)
                spec = ShipmentSpec(chosen, f"bench-{tag}-ship-{position}",
                                    int(amounts[chosen] * rng.uniform(0.3, 0.9)), at,
                                    f"鲁B·{rng.randrange(10000, 99999)} 运单 {position}")
            else:
                activity = rng.choices(names, weights)[0]
                details, interval, passed = _activity(rng, activity)
                spec = TraceSpec(rng.choice(active), f"SD-{tag}-{position:08d}", activity, at,
                                 details, interval, passed)
            message.append(spec)
        if layout == "grouped":
            order = {"batch": 0, "shipment": 1, "internal_trace": 2}
            message.sort(key=lambda s: order[_kind(s)])
        active = [s for s in active if s not in set(shipped)]
        messages.append(message)
    return Plan(seller, buyer, setup, messages, slots=slot)


def build_requests(plan: Plan) -> None:
    """The protobuf messages of the plan (batch ids still empty)."""
    plan.setup_requests = [
        pb.CaptureRecordsRequest(records=[_record(spec, plan.seller, plan.buyer)
                                          for spec in plan.setup[first:first + MAX_MESSAGE]])
        for first in range(0, len(plan.setup), MAX_MESSAGE)]
    plan.requests = [pb.CaptureRecordsRequest(records=[
        _record(spec, plan.seller, plan.buyer) for spec in message])
        for message in plan.messages]


# -- 9. the baseline: COPY of the rows the service stores ----------------------------------------


def _new_id(prefix: str, province: str, rng: random.Random) -> str:
    return prefix + province + "".join(rng.choice(_ALPHABET) for _ in range(13))


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return text


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _trace_summary(spec: TraceSpec) -> str:
    details = ", ".join(f"{k}: {v}" for k, v in sorted(spec.details.items()))
    return spec.activity + (f" ({details})" if details else "")


def baseline_rows(plan: Plan, setup_ids: list[str], seed: int) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the service ends up inserting for the stream, table by table (new batches get
    ids of the service's format; the batches in progress keep theirs)."""
    rng = random.Random(seed + 1)
    now = datetime.now(UTC)
    ids = setup_ids + [_new_id("B", PROVINCE, rng) for _ in range(plan.slots - len(setup_ids))]
    seller, buyer = plan.seller, plan.buyer
    context = json.dumps({"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"})
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in TABLES}

    def event(name: str, payload: dict[str, Any]) -> None:
        rows["event_outbox"].append((uuid.uuid4().hex, "flow", name, json.dumps(
            payload, ensure_ascii=False, sort_keys=True), context, now, None))

    def traces(run: list[TraceSpec]) -> None:
        by_batch: dict[str, list[TraceSpec]] = {}
        for spec in run:
            batch_id = ids[spec.slot]
            by_batch.setdefault(batch_id, []).append(spec)
            rows["internal_traces"].append((
                PROVINCE, spec.record_id, batch_id, spec.activity.upper(), spec.occurred_at,
                json.dumps(spec.details, ensure_ascii=False, sort_keys=True),
                spec.interval_days, spec.passed))
            rows["batch_history"].append((batch_id, spec.occurred_at, "INTERNAL_TRACE", seller,
                                          "", f"{PROVINCE}:{spec.record_id}",
                                          _trace_summary(spec)))
        event("internal_trace_recorded", {
            "records": [{"batch_id": ids[s.slot], "source_province": PROVINCE,
                         "source_record_id": s.record_id, "activity": s.activity.upper(),
                         "occur_time": s.occurred_at.isoformat()} for s in run],
            "flags": {batch_id: [] for batch_id in sorted(by_batch)}})

    for message in plan.messages:
        # The service stores a message's production records together, after its other
        # records: one call, one event per message.
        run: list[TraceSpec] = []
        for spec in message:
            if isinstance(spec, TraceSpec):
                run.append(spec)
                continue
            batch_id = ids[spec.slot]
            amount = Decimal(spec.amount).quantize(Decimal("0.001"))
            if isinstance(spec, BatchSpec):
                certificate_id = _new_id("C", "00", rng)
                rows["batches"].append((
                    batch_id, seller, COUNTY, PRODUCT_CODE, PRODUCT_NAME, CATEGORY, amount, "KG",
                    spec.production_date, COUNTY, certificate_id, PRODUCER,
                    PHONE[:3] + "****" + PHONE[-4:], spec.created.date(), COMMITMENT,
                    "PROCESS_CONTROL", "", "", "", 0, now))
                rows["holdings"].append((batch_id, seller, amount, "KG"))
                rows["request_log"].append((spec.request_id, "batch", _fingerprint(
                    "batch", spec.request_id), batch_id, now))
                rows["batch_history"].append((
                    batch_id, now, "CREATED", seller, "", batch_id,
                    f"{PRODUCT_NAME} {spec.amount} KG produced in {COUNTY}"))
                event("batch_created", {
                    "batch_id": batch_id, "subject_id": seller, "subject_division": COUNTY,
                    "product_code": PRODUCT_CODE, "product_name": PRODUCT_NAME,
                    "category": CATEGORY, "quantity": str(amount), "unit": "KG",
                    "production_date": spec.production_date.isoformat(),
                    "origin_division": COUNTY, "certificate_id": certificate_id,
                    "parent_batch_ids": [], "code_count": 0})
            else:
                shipment_id = _new_id("S", PROVINCE, rng)
                rows["shipments"].append((shipment_id, batch_id, seller, buyer, "", amount,
                                          "KG", spec.ship_time, spec.document, None))
                rows["holdings"].append((batch_id, buyer, amount, "KG"))
                rows["request_log"].append((spec.request_id, "ship", _fingerprint(
                    "ship", spec.request_id), shipment_id, now))
                rows["batch_history"].append((
                    batch_id, spec.ship_time, "SHIPPED", seller, buyer, shipment_id,
                    f"{spec.amount} KG to {buyer} ({PROVINCE}→{BUYER_COUNTY[:2]})"))
                event("batch_shipped", {
                    "shipment_id": shipment_id, "batch_id": batch_id,
                    "seller_subject_id": seller, "buyer_subject_id": buyer,
                    "seller_province": PROVINCE, "buyer_province": BUYER_COUNTY[:2],
                    "cross_province": True, "quantity": str(amount), "unit": "KG",
                    "codes": [], "ship_time": spec.ship_time.isoformat()})
        if run:
            traces(run)
    return rows


def copy_blocks(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[bytes]]:
    """COPY text of every table, in blocks of COPY_BLOCK rows."""
    return {table: ["".join("\t".join(map(_copy_field, row)) + "\n"
                            for row in table_rows[start:start + COPY_BLOCK]).encode()
                    for start in range(0, len(table_rows), COPY_BLOCK)]
            for table, table_rows in rows.items()}


@dataclass
class FlowCopy:
    rows: dict[str, int]
    seconds: float  # every COPY + the commit
    table_seconds: dict[str, float]
    stored: dict[str, int]

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def timed_flow_copy(conninfo: str, blocks: dict[str, list[bytes]],
                    rows: dict[str, int]) -> FlowCopy:
    """COPY the blocks into tables LIKE flow.<table> INCLUDING ALL (schema bench_flow), all in
    one transaction; times the COPYs + the commit."""
    table_seconds: dict[str, float] = {}
    stored: dict[str, int] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_flow CASCADE")
        conn.execute("CREATE SCHEMA bench_flow")
        for table in TABLES:
            conn.execute(f"CREATE TABLE bench_flow.{table} (LIKE flow.{table} INCLUDING ALL)")
        conn.execute("CHECKPOINT")  # as before the stream
        started = time.perf_counter()
        with conn.transaction():
            for table, columns in TABLES.items():
                table_started = time.perf_counter()
                statement = f"COPY bench_flow.{table} ({', '.join(columns)}) FROM STDIN"
                with conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for block in blocks[table]:
                        copy.write(block)
                table_seconds[table] = time.perf_counter() - table_started
            committing = time.perf_counter()
        seconds = time.perf_counter() - started
        table_seconds["commit"] = time.perf_counter() - committing
        for table in TABLES:
            row = conn.execute(f"SELECT count(*) FROM bench_flow.{table}").fetchone()
            stored[table] = int(row[0]) if row else 0
        conn.execute("DROP SCHEMA bench_flow CASCADE")
    return FlowCopy(rows, seconds, table_seconds, stored)


# -- 9. the stream ------------------------------------------------------------------------------


@dataclass
class StreamRun:
    seconds: float
    responses: list[pb.CaptureRecordsResponse]
    answer_seconds: list[float]  # per message, since the previous answer (or the start)
    cpu: CpuSample
    outcomes: dict[str, Counter[str]]  # kind -> outcome -> records
    examples: list[str]
    unanswered: int  # messages without an answer


def capture(platform: Platform, specs: list[list[Spec]],
            requests: list[pb.CaptureRecordsRequest], ids: list[str | None], label: str,
            *, progress_every: int = 10) -> StreamRun:
    """One CaptureRecords call streaming `requests`; a record's batch id is filled in from
    `ids` when its message is sent, message m only after the answer to m - LAG arrived (it
    carries the ids of the batches created in it, stored into `ids`)."""
    count = len(requests)
    answered = [threading.Event() for _ in range(count)]
    stop = threading.Event()
    patches = [[(index, spec.slot, isinstance(spec, ShipmentSpec))
                for index, spec in enumerate(message) if not isinstance(spec, BatchSpec)]
               for message in specs]
    creations = [[(index, spec.slot) for index, spec in enumerate(message)
                  if isinstance(spec, BatchSpec)] for message in specs]

    def messages() -> Iterator[pb.CaptureRecordsRequest]:
        for number, request in enumerate(requests):
            if number >= LAG:
                while not answered[number - LAG].wait(1.0):
                    if stop.is_set():
                        return
            for index, slot, shipment in patches[number]:
                record = request.records[index]
                target = record.shipment.shipment if shipment else record.internal_trace.record
                target.batch_id = ids[slot] or ""
            yield request

    responses: list[pb.CaptureRecordsResponse] = []
    answer_seconds: list[float] = []
    total = sum(len(message) for message in specs)
    done = 0
    with grpc.insecure_channel(platform.server.address, options=CHANNEL_OPTIONS) as channel:
        stub = flow_pb2_grpc.FlowServiceStub(channel)  # type: ignore[no-untyped-call]
        before = CpuSample.take([platform.pid])
        started = last = time.perf_counter()
        try:
            for response in stub.CaptureRecords(messages(), metadata=platform.credentials,
                                                timeout=STREAM_TIMEOUT):
                now = time.perf_counter()
                number = len(responses)
                responses.append(response)
                answer_seconds.append(now - last)
                last = now
                by_index = {result.index: result for result in response.results}
                for index, slot in creations[number]:
                    result = by_index.get(index)
                    if result is not None and result.outcome == "STORED":
                        ids[slot] = result.id
                answered[number].set()
                done += len(specs[number])
                if (number + 1) % progress_every == 0 or number + 1 == count:
                    elapsed = now - started
                    log(f"  [{label}] {done:>9,}/{total:,} records  {elapsed:6.1f} s  "
                        f"{done / elapsed:8,.0f} rec/s")
        finally:
            stop.set()
        seconds = time.perf_counter() - started
        cpu = CpuSample.take([platform.pid]) - before
    outcomes: dict[str, Counter[str]] = {kind: Counter() for kind in KIND_NAMES}
    examples: list[str] = []
    for message, response in zip(specs, responses, strict=False):
        by_index = {result.index: result for result in response.results}
        for index, spec in enumerate(message):
            result = by_index.get(index)
            outcome = result.outcome if result is not None else "NO ANSWER"
            outcomes[_kind(spec)][outcome] += 1
            if outcome != "STORED" and len(examples) < 5:
                why = f"{result.error_code} {result.field} {result.reason}" if result else ""
                examples.append(f"{KIND_NAMES[_kind(spec)]} #{index}: {outcome} {why}".strip())
    for message in specs[len(responses):]:
        for spec in message:
            outcomes[_kind(spec)]["NO ANSWER"] += 1
    return StreamRun(seconds, responses, answer_seconds, cpu, outcomes, examples,
                     count - len(responses))


def _table_counts(db: ThrowawayDatabase) -> dict[str, int]:
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        return {table: int(row[0]) if (row := conn.execute(
            f"SELECT count(*) FROM flow.{table}").fetchone()) else 0 for table in TABLES}


class KindProfile:
    """Where the server's wall time went during the stream, by record kind: py-spy samples
    the platform process (wall clock: --idle keeps the samples where a thread waits, e.g. on
    PostgreSQL) and the samples of the CaptureRecords thread are split by the servicer
    function on the stack (_create_batch, _record_shipment, _traces; anything else is the
    stream itself: reading messages, answering). Raw stacks go to bench-results/
    flow-capture.collapsed (`python -m benchmarks.stacks FILE --match CaptureRecords`)."""

    def __init__(self, pid: int, *, enabled: bool = True) -> None:
        self.pid = pid
        self.enabled = enabled
        self.output = RESULTS_DIR / "flow-capture.collapsed"
        self.process: subprocess.Popen[bytes] | None = None
        self.error = ""
        self.samples = 0
        self.by_kind: Counter[str] = Counter()
        self.parts: Counter[str] = Counter()

    def __enter__(self) -> KindProfile:
        if not self.enabled:
            self.error = "disabled"
            return self
        candidates = [Path(sys.executable).parent / "py-spy", shutil.which("py-spy")]
        binary = next((str(c) for c in candidates if c and Path(c).exists()), None)
        if binary is None:
            self.error = "py-spy not found"
            return self
        RESULTS_DIR.mkdir(exist_ok=True)
        self.output.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            # --nonblocking: the platform is never paused (paused 100 times a second with
            # every thread unwound, it lost ~18% of its rate; not paused, none measurable)
            [binary, "record", "--pid", str(self.pid), "--idle", "--nonblocking", "--rate",
             "100", "--format", "raw", "--output", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach before the stream starts
        if self.process.poll() is not None:
            self.error = (self.process.stderr.read().decode(errors="replace").strip()
                          if self.process.stderr else "py-spy exited")[-200:]
            self.process = None
        return self

    def __exit__(self, *_: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        try:
            lines = self.output.read_text().splitlines()
        except OSError as error:
            self.error = f"no py-spy output ({error})"
            return
        for line in lines:
            stack, _space, count_text = line.rpartition(" ")
            if "FlowServicer.CaptureRecords (" not in stack or not count_text.isdigit():
                continue
            count = int(count_text)
            self.samples += count
            kind = next((k for k, frames in PROFILE_KINDS.items()
                         if any(f in stack for f in frames)), "stream")
            self.by_kind[kind] += count
            for part, frame in PROFILE_PARTS:
                if frame in stack:
                    self.parts[part] += count

    def seconds(self, kind: str, wall: float) -> float:
        """The kind's share of the handler's samples, in seconds of the stream's wall time."""
        return self.by_kind[kind] / self.samples * wall if self.samples else 0.0

    def share(self, part: str) -> float:
        return self.parts[part] / self.samples if self.samples else 0.0


# -- 10. the history of one batch ---------------------------------------------------------------


@dataclass
class HistoryRun:
    batch_id: str
    entries: int  # rows of batch_history for the batch
    service: LatencyResult
    select: LatencyResult
    server_cpu_us_per_call: float
    problems: list[str]


def _history_batch(platform: Platform, seed: int) -> tuple[str | None, list[str]]:
    """A batch with HISTORY_ENTRIES history entries: its creation, then production records
    (one CaptureRecords message). Returns its id and what went wrong."""
    rng = random.Random(seed + 2)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=SEASON_DAYS)
    tag = uuid.uuid4().hex[:8]
    batch = BatchSpec(0, f"bench-{tag}-history", 12_000, (start + timedelta(days=GROW_DAYS)).date(),
                      start)
    names = [name for name, _ in ACTIVITIES]
    weights = [weight for _, weight in ACTIVITIES]
    traces: list[Spec] = []
    for number in range(HISTORY_ENTRIES - 1):
        activity = rng.choices(names, weights)[0]
        details, interval, passed = _activity(rng, activity)
        at = start + timedelta(seconds=SEASON_DAYS * 86400 * (number + 1) / HISTORY_ENTRIES)
        traces.append(TraceSpec(0, f"SD-{tag}-history-{number:04d}", activity, at, details,
                                interval, passed))
    ids: list[str | None] = [None]
    problems: list[str] = []
    created: list[Spec] = [batch]
    for label, specs in (("history batch", created), ("history records", traces)):
        request = pb.CaptureRecordsRequest(
            records=[_record(spec, platform.subject_id, platform.subject_id) for spec in specs])
        run = capture(platform, [specs], [request], ids, label)
        stored = sum(counts["STORED"] for counts in run.outcomes.values())
        if stored != len(specs):
            problems.append(f"{label}: {stored} of {len(specs)} records STORED "
                            f"({'; '.join(run.examples)})")
    return ids[0], problems


def history_latency(platform: Platform, db: ThrowawayDatabase, calls: int, seed: int,
                    *, warmup: int = 100) -> HistoryRun:
    batch_id, problems = _history_batch(platform, seed)
    if batch_id is None:
        raise RuntimeError(f"the history batch was not created: {problems}")
    entries = db.scalar(f"SELECT count(*) FROM flow.batch_history WHERE batch_id = '{batch_id}'")
    samples: list[float] = []
    wrong = 0
    with grpc.insecure_channel(platform.server.address, options=CHANNEL_OPTIONS) as channel:
        stub = flow_pb2_grpc.FlowServiceStub(channel)  # type: ignore[no-untyped-call]
        request = pb.ListBatchHistoryRequest(batch_id=batch_id, page_size=HISTORY_ENTRIES)
        for _ in range(warmup):
            stub.ListBatchHistory(request, metadata=platform.credentials, timeout=30)
        cpu_before = CpuSample.take([platform.pid])
        for _ in range(calls):
            started = time.perf_counter()
            reply = stub.ListBatchHistory(request, metadata=platform.credentials, timeout=30)
            samples.append(time.perf_counter() - started)
            if len(reply.records) != HISTORY_ENTRIES or reply.next_page_token:
                wrong += 1
        cpu = CpuSample.take([platform.pid]) - cpu_before
    if wrong:
        problems.append(f"{wrong:,} ListBatchHistory answers did not hold the {HISTORY_ENTRIES:,} "
                        "entries in one page")
    service = summarise("ListBatchHistory, page_size 1000, all-in-one platform", samples)
    query = ("SELECT * FROM flow.batch_history WHERE batch_id = %s "
             "ORDER BY occurred_at, seq LIMIT %s")
    raw: list[float] = []
    short = 0
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        for number in range(warmup + calls):
            started = time.perf_counter()
            rows = conn.execute(query, (batch_id, HISTORY_ENTRIES + 1)).fetchall()
            elapsed = time.perf_counter() - started
            if number >= warmup:
                raw.append(elapsed)
                short += len(rows) != HISTORY_ENTRIES
    if short:
        problems.append(f"{short:,} SELECTs did not return {HISTORY_ENTRIES:,} rows")
    select = summarise("psycopg SELECT of the same rows (the repository's query)", raw)
    return HistoryRun(batch_id, entries, service, select,
                      cpu.server / calls * 1e6 if calls else 0.0, problems)


# -- the phase ----------------------------------------------------------------------------------


def run_flow_phase(report: Report, console: Console, *, records: int, history_calls: int,
                   seed: int, layout: str = "interleaved", profile: bool = True) -> None:
    db = ThrowawayDatabase(suffix="_flow")
    platform: Platform | None = None
    try:
        db.create()
        log(f"[flow] throwaway database {db.name}; starting the all-in-one platform "
            "(sso + registry + coding + flow + query in one process; it migrates on start-up)")
        platform = start_platform(db, COUNTY, PRODUCER, label="flow",
                                  log_name="flow-platform-server.log")
        buyer = platform.register_subject(BUYER_COUNTY, "北京新发地农产品批发市场（基准测试）")
        console.print(
            f"  flow runs in the all-in-one platform process (pid {platform.pid}: sso + "
            "registry + coding + flow, PostgreSQL), called as the administrator; subjects: "
            f"{platform.subject_id} ({PRODUCER}, {COUNTY}) and {buyer} (a market in "
            f"{BUYER_COUNTY})")
        _capture_phase(report, console, db, platform, buyer, records, seed, layout, profile)
        _history_phase(report, console, db, platform, history_calls, seed)
    finally:
        if platform is not None:
            platform.stop()
        db.drop()


def _capture_phase(report: Report, console: Console, db: ThrowawayDatabase,
                   platform: Platform, buyer: str, records: int, seed: int,
                   layout: str, profile_stream: bool) -> None:
    log(f"[flow] building {records:,} records ({layout}) and their messages (untimed)")
    started = time.perf_counter()
    plan = build_plan(records, seed, platform.subject_id, buyer, layout)
    build_requests(plan)
    kinds = plan.kinds()
    runs = plan.trace_runs()
    run_events = sum(len({spec.slot for spec in run}) for run in runs)
    console.print(
        f"  stream: {plan.records:,} records in {len(plan.messages)} messages ({layout}): "
        f"CreateBatch {kinds['batch']:,}, RecordShipment {kinds['shipment']:,}, "
        f"RecordInternalTrace {kinds['internal_trace']:,} in {len(runs):,} runs (transactions) "
        f"of {kinds['internal_trace'] / max(1, len(runs)):,.1f} records touching "
        f"{run_events / max(1, len(runs)):,.1f} batches on average; built in "
        f"{time.perf_counter() - started:.1f} s")

    log(f"[flow] setup (untimed): {len(plan.setup):,} batches in progress, through "
        "CaptureRecords")
    ids: list[str | None] = [None] * plan.slots
    setup_messages: list[list[Spec]] = [list(plan.setup[i:i + MAX_MESSAGE])
                                        for i in range(0, len(plan.setup), MAX_MESSAGE)]
    setup = capture(platform, setup_messages, plan.setup_requests, ids, "flow setup")
    if setup.outcomes["batch"]["STORED"] != len(plan.setup):
        report.mismatch(f"flow setup: {setup.outcomes['batch']['STORED']:,} of "
                        f"{len(plan.setup):,} batches STORED ({'; '.join(setup.examples)})")
    console.print(f"  setup: {len(plan.setup):,} CreateBatch in {setup.seconds:.1f} s "
                  f"({len(plan.setup) / setup.seconds:,.0f}/s), untimed")

    log("[flow] baseline: building the rows the service stores for the stream (untimed)")
    setup_ids = [ident or "" for ident in ids[:len(plan.setup)]]
    rows = baseline_rows(plan, setup_ids, seed)
    counts = {table: len(table_rows) for table, table_rows in rows.items()}
    blocks = copy_blocks(rows)
    del rows
    log(f"[flow] COPY {sum(counts.values()):,} rows into 7 tables LIKE flow.* INCLUDING ALL")
    copy = timed_flow_copy(db.conninfo, blocks, counts)
    del blocks
    detail = ", ".join(f"{table} {n:,}" for table, n in counts.items())
    console.print(
        f"  COPY baseline (one transaction, tables LIKE flow.* INCLUDING ALL): "
        f"{copy.total_rows:,} rows in {copy.seconds:.2f} s = [bold]"
        f"{plan.records / copy.seconds:,.0f} records/s[/] ({copy.total_rows / copy.seconds:,.0f}"
        f" rows/s)\n    rows: {detail}\n    seconds: " + ", ".join(
            f"{table} {seconds:.2f}" for table, seconds in copy.table_seconds.items()))
    if copy.stored != counts:
        report.mismatch(f"flow baseline: stored {copy.stored}, expected {counts}")

    log(f"[flow] CaptureRecords: {plan.records:,} records in {len(plan.requests)} messages")
    before = _table_counts(db)
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # as before the baseline COPY
    with KindProfile(platform.pid, enabled=profile_stream) as profile:
        run = capture(platform, plan.messages, plan.requests, ids, "flow capture")
    rate = plan.records / run.seconds if run.seconds else 0.0
    after = _table_counts(db)
    added = {table: after[table] - before[table] for table in TABLES}
    spent = {kind: profile.seconds(kind, run.seconds) for kind in (*KIND_NAMES, "stream")}
    flagged = db.scalar("SELECT count(*) FROM flow.batches WHERE flags <> ''")
    met = rate >= RATE_GOAL
    verdict = "[bold green]MET[/]" if met else "[bold red]NOT MET[/]"
    outcome_text = "; ".join(
        f"{KIND_NAMES[kind]} " + ", ".join(f"{o} {n:,}" for o, n in sorted(c.items()))
        for kind, c in run.outcomes.items())
    per_kind = {kind: kinds[kind] / spent[kind] if spent[kind] else 0.0 for kind in KIND_NAMES}
    answers = sorted(run.answer_seconds)
    cpu = run.cpu
    console.print(
        f"  CaptureRecords {plan.records:,} records: {run.seconds:.1f} s = [bold]{rate:,.0f} "
        f"records/s[/] (goal ≥ {RATE_GOAL:,.0f}: {verdict}); "
        f"{rate / (plan.records / copy.seconds):.3f} of the COPY's rate\n"
        f"    outcomes: {outcome_text}")
    if answers:
        console.print(f"    answers per message: median {answers[len(answers) // 2]:.2f} s, "
                      f"max {answers[-1]:.2f} s")
    if profile.samples:
        console.print(
            f"    server wall time by kind (py-spy, {profile.samples:,} samples of the "
            "CaptureRecords thread): " + ", ".join(
                f"{KIND_NAMES[k]} {spent[k]:.1f} s = {per_kind[k]:,.0f}/s "
                f"({spent[k] / kinds[k] * 1e3:.2f} ms per record)" for k in KIND_NAMES if kinds[k])
            + f", the stream itself (with the runs' bulk reads and writes) "
            f"{spent['stream']:.1f} s\n"
            "    of the CaptureRecords thread's time: " + ", ".join(
                f"{label} {profile.share(label):.0%}" for label, _ in PROFILE_PARTS))
    else:
        console.print(f"    server time by kind: not measured ({profile.error or 'no samples'})")
    console.print(
        f"    CPU during the stream: platform {cpu.server:.1f} s, PostgreSQL "
        f"{cpu.postgres:.1f} s, benchmark client {cpu.client:.1f} s (wall {run.seconds:.1f} s)\n"
        f"    rows added: " + ", ".join(f"{t} {n:,}" for t, n in added.items())
        + f"; batches flagged now: {flagged:,}")
    for kind, outcome_counts in run.outcomes.items():
        if outcome_counts["STORED"] != kinds[kind]:
            report.mismatch(f"flow capture: {outcome_counts['STORED']:,} of {kinds[kind]:,} "
                            f"{KIND_NAMES[kind]} records STORED ({dict(outcome_counts)})")
    for example in run.examples:
        console.print(f"    e.g. {example}")
    if run.unanswered:
        report.mismatch(f"flow capture: {run.unanswered} messages got no answer")
    if added != counts:
        report.mismatch(f"flow capture: rows added {added} != the baseline's {counts}")
    report.figures["flow"] = {
        "process": "all-in-one platform (sso + registry + coding + flow + query), PostgreSQL",
        "records": plan.records, "messages": len(plan.messages), "layout": layout,
        "mix": dict(kinds), "trace_runs": len(runs), "trace_events": run_events,
        "batches_in_progress_before": len(plan.setup),
        "setup_seconds": round(setup.seconds, 3),
        "copy_baseline": {"rows": counts, "seconds": round(copy.seconds, 3),
                          "table_seconds": {t: round(s, 3)
                                            for t, s in copy.table_seconds.items()},
                          "records_per_second": round(plan.records / copy.seconds, 1)},
        "capture": {
            "seconds": round(run.seconds, 3), "records_per_second": round(rate, 1),
            "outcomes": {kind: dict(c) for kind, c in run.outcomes.items()},
            "answer_seconds_median": round(answers[len(answers) // 2], 3) if answers else None,
            "answer_seconds_max": round(answers[-1], 3) if answers else None,
            "server_seconds_by_kind": {k: round(v, 3) for k, v in spent.items()}
            if profile.samples else None,
            "server_records_per_second_by_kind": {k: round(v, 1) for k, v in per_kind.items()}
            if profile.samples else None,
            "handler_time_shares": {label: round(profile.share(label), 4)
                                    for label, _ in PROFILE_PARTS}
            if profile.samples else None,
            "profile_samples": profile.samples, "profile_error": profile.error,
            "rows_added": added, "batches_flagged": flagged,
            "cpu_seconds": {k: round(v, 2) for k, v in asdict(cpu).items()},
            "ratio_to_copy": round(rate / (plan.records / copy.seconds), 4),
            "goal_records_per_second": RATE_GOAL, "goal_met": met,
        },
    }
    report.rows.append((
        f"9. CaptureRecords {plan.records:,} mixed records ({layout}; 1% batch, 1% shipment, "
        "98% internal trace)",
        f"{run.seconds:.1f} s, {rate:,.0f} rec/s",
        f"COPY of the {copy.total_rows:,} rows stored (7 tables, indexes): {copy.seconds:.2f} s"
        f", {plan.records / copy.seconds:,.0f} rec/s",
        f"{rate / (plan.records / copy.seconds):.3f} of COPY (goal ≥ {RATE_GOAL:,.0f} rec/s: "
        f"{'MET' if met else 'NOT MET'})",
    ))
    report.rows.append((
        "   server wall time per kind (py-spy samples)",
        ", ".join(f"{KIND_NAMES[k].removeprefix('Record')} {per_kind[k]:,.0f}/s"
                  for k in KIND_NAMES) if profile.samples else "not measured",
        f"{len(runs):,} trace runs of {kinds['internal_trace'] / max(1, len(runs)):,.0f} "
        "records",
        f"CPU: platform {cpu.server:.0f} s, PostgreSQL {cpu.postgres:.0f} s",
    ))


def _history_phase(report: Report, console: Console, db: ThrowawayDatabase,
                   platform: Platform, calls: int, seed: int) -> None:
    log(f"[flow] history: a batch with {HISTORY_ENTRIES:,} entries; {calls:,} ListBatchHistory "
        "calls (page_size 1000) and as many psycopg SELECTs")
    run = history_latency(platform, db, calls, seed)
    for measured in (run.service, run.select):
        console.print(f"  {measured.label}: p50 {measured.p50_us:,.0f} µs, p99 "
                      f"{measured.p99_us:,.0f} µs, mean {measured.mean_us:,.0f} µs "
                      f"({measured.calls:,} calls)")
    console.print(f"    batch {run.batch_id}: {run.entries:,} history entries; platform CPU "
                  f"{run.server_cpu_us_per_call:,.0f} µs per ListBatchHistory call")
    if run.entries != HISTORY_ENTRIES:
        report.mismatch(f"flow history: {run.entries:,} entries for the batch, expected "
                        f"{HISTORY_ENTRIES:,}")
    for problem in run.problems:
        report.mismatch(f"flow history: {problem}")
    ratio = run.service.p50_us / run.select.p50_us if run.select.p50_us else 0.0
    report.figures.setdefault("flow", {})["history"] = {
        "batch_id": run.batch_id, "entries": run.entries, "page_size": HISTORY_ENTRIES,
        "list_batch_history": asdict(run.service), "psycopg_select": asdict(run.select),
        "server_cpu_us_per_call": round(run.server_cpu_us_per_call, 1),
        "ratio_p50": round(ratio, 2),
    }
    report.rows.append((
        f"10. ListBatchHistory, {HISTORY_ENTRIES:,} entries in one page ({calls:,} calls)",
        f"p50 {run.service.p50_us:,.0f} µs, p99 {run.service.p99_us:,.0f} µs",
        f"psycopg SELECT same rows: p50 {run.select.p50_us:,.0f} µs, p99 "
        f"{run.select.p99_us:,.0f} µs",
        f"{ratio:.1f}× the SELECT (p50); platform CPU {run.server_cpu_us_per_call:,.0f} µs/call",
    ))
