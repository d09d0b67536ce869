"""The gRPC face of the flow service: translates messages to use-case calls and back. No
business rules here; domain errors become statuses in the kernel's interceptor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2

from agritrace.flow.v1 import flow_pb2 as pb
from agritrace.flow.v1 import flow_pb2_grpc
from agritrace_flow.adapters.sheets import csv_chunks, xlsx_chunks
from agritrace_flow.domain.model import (
    Activity,
    Batch,
    CertificateBasis,
    MarketEntry,
    Quantity,
    Shipment,
    TransformationKind,
)
from agritrace_flow.service_layer.interchange import SHEET_COLUMNS, Interchange
from agritrace_flow.service_layer.ports import HistoryEntry
from agritrace_flow.service_layer.services import (
    BatchCommand,
    BatchInput,
    CertificateInput,
    Command,
    FlowService,
    ShipmentCommand,
    ShipmentInput,
    TraceInput,
)
from agritrace_kernel.auth.principal import Principal, current_principal
from agritrace_kernel.errors import DomainError, InvalidArgument
from agritrace_kernel.grpc_kit.enums import enum_by_number
from agritrace_kernel.grpc_kit.status import status_code_for
from agritrace_kernel.grpc_kit.timestamps import to_timestamp

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FlowService"].full_name
MAX_CAPTURE_MESSAGE = 5000
_ENUMS = pb.DESCRIPTOR.enum_types_by_name
_BASES = enum_by_number(_ENUMS["CertificateBasis"], CertificateBasis, "CERTIFICATE_BASIS_")
_BASIS_NUMBERS = {basis: number for number, basis in _BASES.items()}
_KINDS = enum_by_number(_ENUMS["TransformationKind"], TransformationKind,
                        "TRANSFORMATION_KIND_")
_REFUSALS = {name.removeprefix("ENTRY_REFUSAL_"): number
             for name, number in pb.EntryRefusal.items() if number}


# -- messages -> inputs ------------------------------------------------------------------------


def _date(message: date_pb2.Date, present: bool) -> date | None:
    if not present:
        return None
    try:
        return date(message.year, message.month, message.day)
    except ValueError:
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(message: Timestamp, present: bool) -> datetime | None:
    """Timestamp.ToDatetime(tzinfo=UTC), without its time-zone conversion (a third of the
    cost of converting a production record)."""
    if not present:
        return None
    return _EPOCH + timedelta(0, message.seconds, message.nanos // 1000)


def batch_input(message: pb.Batch, codes: list[str]) -> BatchInput:
    certificate = None
    if message.HasField("certificate"):
        c = message.certificate
        certificate = CertificateInput(
            certificate_id=c.certificate_id, producer_name=c.producer_name,
            contact_phone=c.contact_phone, issue_date=_date(c.issue_date,
                                                            c.HasField("issue_date")),
            commitment=c.commitment, basis=_BASES.get(c.basis), test_result=c.test_result)
    return BatchInput(
        subject_id=message.subject_id, product_code=message.product_code,
        product_name=message.product_name, amount=message.quantity.amount,
        unit=message.quantity.unit,
        production_date=_date(message.production_date, message.HasField("production_date")),
        origin_division=message.origin_division, certificate=certificate, codes=tuple(codes))


def shipment_input(message: pb.Shipment) -> ShipmentInput:
    return ShipmentInput(
        batch_id=message.batch_id, seller_subject_id=message.seller_subject_id,
        buyer_subject_id=message.buyer_subject_id, codes=tuple(message.codes),
        amount=message.quantity.amount, unit=message.quantity.unit,
        ship_time=_time(message.ship_time, message.HasField("ship_time")),
        transport_document=message.transport_document)


_ACTIVITIES: dict[str, Activity] = {
    "planting": Activity.PLANTING, "fertiliser": Activity.FERTILISER,
    "pesticide": Activity.PESTICIDE, "feed": Activity.FEED,
    "veterinary_drug": Activity.VETERINARY_DRUG, "harvest": Activity.HARVEST,
    "slaughter": Activity.SLAUGHTER, "inspection": Activity.INSPECTION,
}


_INTERVAL_FIELDS = frozenset({"pre_harvest_interval_days", "withdrawal_period_days"})


def trace_input(record: pb.InternalTraceRecord) -> TraceInput:
    kind = record.WhichOneof("activity")
    details: dict[str, str] = {}
    interval, passed = 0, True
    if kind is not None:
        activity_message: Any = getattr(record, kind)
        for field, value in activity_message.ListFields():
            name = field.name
            if type(value) is str:  # most details (str() of a str is the str itself)
                details[name] = value
            elif name in _INTERVAL_FIELDS:
                interval = int(value)
            elif name == "passed":
                passed = bool(value)
            elif isinstance(value, pb.Quantity):
                details[name] = f"{value.amount} {value.unit}".strip()
            else:
                details[name] = str(value)
        if kind == "inspection":
            passed = bool(record.inspection.passed)
    return TraceInput(
        source_province=record.source_province, source_record_id=record.source_record_id,
        batch_id=record.batch_id,
        occurred_at=_time(record.occur_time, record.HasField("occur_time")),
        activity=_ACTIVITIES.get(kind or ""), details=details, interval_days=interval,
        passed=passed)


# -- domain -> messages ------------------------------------------------------------------------


def _date_message(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def _quantity(value: Quantity) -> pb.Quantity:
    return pb.Quantity(amount=f"{value.amount.normalize():f}", unit=value.unit.value)


def batch_to_proto(batch: Batch) -> pb.Batch:
    message = pb.Batch(
        batch_id=batch.batch_id, subject_id=batch.subject_id,
        product_code=batch.product_code, product_name=batch.product_name,
        category=batch.category, quantity=_quantity(batch.quantity),
        production_date=_date_message(batch.production_date),
        origin_division=batch.origin_division, code_count=batch.code_count,
        parent_batch_ids=batch.parent_batch_ids, flags=batch.flags)
    if batch.created_at is not None:
        message.create_time.CopyFrom(to_timestamp(batch.created_at))
    if batch.certificate is not None:
        c = batch.certificate
        message.certificate.CopyFrom(pb.Certificate(
            certificate_id=c.certificate_id, producer_name=c.producer_name,
            contact_phone=c.contact_phone_masked, issue_date=_date_message(c.issue_date),
            commitment=c.commitment, basis=_BASIS_NUMBERS[c.basis],  # type: ignore[arg-type]
            test_result=c.test_result))
    return message


def shipment_to_proto(shipment: Shipment) -> pb.Shipment:
    message = pb.Shipment(
        shipment_id=shipment.shipment_id, batch_id=shipment.batch_id,
        seller_subject_id=shipment.seller_subject_id,
        buyer_subject_id=shipment.buyer_subject_id, codes=shipment.codes,
        quantity=_quantity(shipment.quantity), ship_time=to_timestamp(shipment.ship_time),
        transport_document=shipment.transport_document)
    if shipment.received_at is not None:
        message.receive_time.CopyFrom(to_timestamp(shipment.received_at))
    return message


def entry_to_proto(entry: MarketEntry) -> pb.MarketEntry:
    return pb.MarketEntry(
        entry_id=entry.entry_id, market_subject_id=entry.market_subject_id,
        admitted=entry.admitted,
        refusal=_REFUSALS[entry.refusal.value] if entry.refusal else 0,  # type: ignore[arg-type]
        reason=entry.reason, batch_id=entry.batch_id, code=entry.code,
        check_time=to_timestamp(entry.check_time))


def history_to_proto(entry: HistoryEntry) -> pb.HistoryRecord:
    return pb.HistoryRecord(
        kind=entry.kind, occur_time=to_timestamp(entry.occurred_at), subject_id=entry.subject_id,
        other_subject_id=entry.other_subject_id, record_id=entry.record_id,
        summary=entry.summary)


class FlowServicer(flow_pb2_grpc.FlowServiceServicer):
    def __init__(self, service: FlowService, interchange: Interchange) -> None:
        self.service = service
        self.interchange = interchange

    # The commands, each usable alone and inside CaptureRecords.

    def _create_batch(self, request: pb.CreateBatchRequest,
                      actor: Principal | None) -> tuple[pb.CreateBatchResponse, str]:
        result = self.service.create_batch(
            request.request_id, batch_input(request.batch, list(request.codes)), actor=actor)
        return (pb.CreateBatchResponse(batch=batch_to_proto(result.value),
                                       replayed=result.replayed), result.value.batch_id)

    def _record_shipment(self, request: pb.RecordShipmentRequest,
                         actor: Principal | None) -> tuple[pb.RecordShipmentResponse, str]:
        result = self.service.record_shipment(request.request_id,
                                              shipment_input(request.shipment), actor=actor)
        return (pb.RecordShipmentResponse(shipment=shipment_to_proto(result.value),
                                          replayed=result.replayed), result.value.shipment_id)

    def _confirm_receipt(self, request: pb.ConfirmReceiptRequest,
                         actor: Principal | None) -> tuple[pb.ConfirmReceiptResponse, str]:
        result = self.service.confirm_receipt(request.request_id, request.buyer_subject_id,
                                              request.code, actor=actor)
        return (pb.ConfirmReceiptResponse(shipment=shipment_to_proto(result.value),
                                          replayed=result.replayed), result.value.shipment_id)

    def _record_market_entry(self, request: pb.RecordMarketEntryRequest, actor: Principal | None
                             ) -> tuple[pb.RecordMarketEntryResponse, str]:
        result = self.service.record_market_entry(
            request.request_id, request.market_subject_id, request.code,
            request.certificate_id, _time(request.check_time, request.HasField("check_time")),
            actor=actor)
        return (pb.RecordMarketEntryResponse(entry=entry_to_proto(result.value),
                                             replayed=result.replayed), result.value.entry_id)

    def _record_transformation(self, request: pb.RecordTransformationRequest,
                               actor: Principal | None
                               ) -> tuple[pb.RecordTransformationResponse, str]:
        inputs = [(i.batch_id, i.quantity.amount, i.quantity.unit, tuple(i.codes))
                  for i in request.inputs]
        result = self.service.record_transformation(
            request.request_id, request.subject_id, _KINDS.get(request.kind), inputs,
            batch_input(request.output, []), request.output_code_count, actor=actor)
        batch, codes = result.value
        return (pb.RecordTransformationResponse(output=batch_to_proto(batch),
                                                output_codes=codes,
                                                replayed=result.replayed), batch.batch_id)

    def _record_internal_trace(self, request: pb.RecordInternalTraceRequest,
                               actor: Principal | None
                               ) -> tuple[pb.RecordInternalTraceResponse, str]:
        result = self.service.record_internal_trace(trace_input(request.record), actor=actor)
        record = request.record
        return (pb.RecordInternalTraceResponse(flags=result.value, replayed=result.replayed),
                f"{record.source_province}:{record.source_record_id}")

    def CreateBatch(self, request: pb.CreateBatchRequest,
                    context: grpc.ServicerContext) -> pb.CreateBatchResponse:
        return self._create_batch(request, current_principal())[0]

    def RecordShipment(self, request: pb.RecordShipmentRequest,
                       context: grpc.ServicerContext) -> pb.RecordShipmentResponse:
        return self._record_shipment(request, current_principal())[0]

    def ConfirmReceipt(self, request: pb.ConfirmReceiptRequest,
                       context: grpc.ServicerContext) -> pb.ConfirmReceiptResponse:
        return self._confirm_receipt(request, current_principal())[0]

    def RecordMarketEntry(self, request: pb.RecordMarketEntryRequest,
                          context: grpc.ServicerContext) -> pb.RecordMarketEntryResponse:
        return self._record_market_entry(request, current_principal())[0]

    def RecordTransformation(self, request: pb.RecordTransformationRequest,
                             context: grpc.ServicerContext) -> pb.RecordTransformationResponse:
        return self._record_transformation(request, current_principal())[0]

    def RecordInternalTrace(self, request: pb.RecordInternalTraceRequest,
                            context: grpc.ServicerContext) -> pb.RecordInternalTraceResponse:
        return self._record_internal_trace(request, current_principal())[0]

    def CaptureRecords(self, request_iterator: Iterator[pb.CaptureRecordsRequest],
                       context: grpc.ServicerContext) -> Iterator[pb.CaptureRecordsResponse]:
        actor = current_principal()
        handlers: dict[str, Callable[[Any, Principal | None], tuple[Any, str]]] = {
            "receipt": self._confirm_receipt, "market_entry": self._record_market_entry,
            "transformation": self._record_transformation,
        }
        for message in request_iterator:
            if len(message.records) > MAX_CAPTURE_MESSAGE:
                raise InvalidArgument.of(
                    "records", f"more than {MAX_CAPTURE_MESSAGE:,} records in one message")
            results: list[pb.CaptureResult] = []
            traces: list[tuple[int, pb.RecordInternalTraceRequest]] = []
            # Batches and shipments in a row (other records aside) are handled together, in
            # order, in one transaction; any other kind ends the run (it is its own use case).
            run: list[tuple[int, Command]] = []
            for index, record in enumerate(message.records):
                kind = record.WhichOneof("record")
                if kind == "internal_trace":
                    # Production records (most of a bridge's traffic) are stored together
                    # after the message's other records, in one transaction: they only need
                    # their batch to exist, which a batch earlier in the message then does.
                    traces.append((index, record.internal_trace))
                    continue
                if kind == "batch":
                    run.append((index, BatchCommand(record.batch.request_id, batch_input(
                        record.batch.batch, list(record.batch.codes)))))
                    continue
                if kind == "shipment":
                    run.append((index, ShipmentCommand(record.shipment.request_id,
                                                       shipment_input(record.shipment.shipment))))
                    continue
                results.extend(self._run(run, actor))
                run = []
                if kind is None:
                    results.append(pb.CaptureResult(
                        index=index, outcome="REFUSED", error_code="INVALID_ARGUMENT",
                        field="record", reason="the record is empty"))
                    continue
                try:
                    response, ident = handlers[kind](getattr(record, kind), actor)
                except DomainError as error:
                    results.append(_refused(index, error))
                    continue
                replayed = bool(getattr(response, "replayed", False))
                results.append(pb.CaptureResult(
                    index=index, outcome="REPLAYED" if replayed else "STORED", id=ident))
            results.extend(self._run(run, actor))
            results.extend(self._traces(traces, actor))
            results.sort(key=lambda result: result.index)
            yield pb.CaptureRecordsResponse(results=results)

    def _run(self, run: list[tuple[int, Command]],
             actor: Principal | None) -> list[pb.CaptureResult]:
        if not run:
            return []
        outcomes = self.service.record_batches_and_shipments([c for _, c in run], actor=actor)
        results = []
        for (index, _), outcome in zip(run, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                results.append(_refused(index, outcome))
                continue
            value = outcome.value
            results.append(pb.CaptureResult(
                index=index, outcome="REPLAYED" if outcome.replayed else "STORED",
                id=value.batch_id if isinstance(value, Batch) else value.shipment_id))
        return results

    def _traces(self, traces: list[tuple[int, pb.RecordInternalTraceRequest]],
                actor: Principal | None) -> list[pb.CaptureResult]:
        if not traces:
            return []
        outcomes = self.service.record_internal_traces(
            [trace_input(request.record) for _, request in traces], actor=actor)
        results = []
        for (index, request), outcome in zip(traces, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                results.append(_refused(index, outcome))
            else:
                results.append(pb.CaptureResult(
                    index=index, outcome="REPLAYED" if outcome.replayed else "STORED",
                    id=f"{request.record.source_province}:{request.record.source_record_id}"))
        return results

    def GetBatch(self, request: pb.GetBatchRequest,
                 context: grpc.ServicerContext) -> pb.GetBatchResponse:
        batch = self.service.get_batch(request.batch_id, actor=current_principal())
        return pb.GetBatchResponse(batch=batch_to_proto(batch))

    def ListBatchHistory(self, request: pb.ListBatchHistoryRequest,
                         context: grpc.ServicerContext) -> pb.ListBatchHistoryResponse:
        page, token = self.service.history(request.batch_id, request.page_size,
                                           request.page_token, actor=current_principal())
        return pb.ListBatchHistoryResponse(records=[history_to_proto(e) for e in page],
                                           next_page_token=token)


    def ExportEpcis(self, request: pb.ExportEpcisRequest,
                    context: grpc.ServicerContext) -> pb.ExportEpcisResponse:
        document, events = self.interchange.export_epcis(
            request.batch_id, request.subject_id,
            _time(request.start_time, request.HasField("start_time")),
            _time(request.end_time, request.HasField("end_time")), actor=current_principal())
        return pb.ExportEpcisResponse(document=document, event_count=events)

    def ImportEpcis(self, request: pb.ImportEpcisRequest,
                    context: grpc.ServicerContext) -> pb.ImportEpcisResponse:
        outcomes = self.interchange.import_epcis(request.document, request.subject_id,
                                                 actor=current_principal())
        return pb.ImportEpcisResponse(results=[
            pb.EpcisEventResult(index=o.index, event_id=o.event_id, outcome=o.outcome,
                                reason=o.reason) for o in outcomes])

    def ExportRecords(self, request: pb.ExportRecordsRequest,
                      context: grpc.ServicerContext) -> Iterator[pb.ExportRecordsResponse]:
        writer = _SHEETS.get(request.format)
        if writer is None:
            raise InvalidArgument.of("format", "must be CSV or XLSX")
        write, content_type = writer
        rows = self.interchange.record_rows(
            request.batch_id, request.product_code,
            _time(request.start_time, request.HasField("start_time")),
            _time(request.end_time, request.HasField("end_time")), actor=current_principal())
        first = True
        for data, written in write(SHEET_COLUMNS, rows):
            yield pb.ExportRecordsResponse(data=data, rows_written=written,
                                           content_type=content_type if first else "")
            first = False


_SHEETS = {
    pb.SHEET_FORMAT_CSV: (csv_chunks, "text/csv; charset=utf-8"),
    pb.SHEET_FORMAT_XLSX: (
        xlsx_chunks, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def _refused(index: int, error: DomainError) -> pb.CaptureResult:
    violations = getattr(error, "violations", None) or []
    return pb.CaptureResult(
        index=index, outcome="REFUSED", error_code=status_code_for(error).name,
        field=violations[0].field if violations else str(error.metadata.get("field", "")),
        reason=error.message)
