"""The gRPC face of the coding service: translates messages to use-case calls and back. No
business rules here; domain errors become statuses in the kernel's interceptor."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator

import grpc

from agritrace.coding.v1 import coding_pb2 as pb
from agritrace.coding.v1 import coding_pb2_grpc
from agritrace_coding.domain.model import (
    CodeRecord,
    CodeState,
    Derivation,
    Issuance,
    IssueMode,
    LabelFormat,
    SerialRange,
)
from agritrace_coding.entrypoints.metrics import code_verifications_total, count_codes
from agritrace_coding.service_layer.services import (
    CodingService,
    IssueResult,
    LineSession,
    MoveResult,
)
from agritrace_kernel.auth.principal import current_principal
from agritrace_kernel.errors import InvalidArgument
from agritrace_kernel.grpc_kit.enums import enum_by_number
from agritrace_kernel.grpc_kit.timestamps import to_timestamp

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CodingService"].full_name
EXPORT_CHUNK_BYTES = 256 * 1024

log = logging.getLogger(__name__)

_ENUMS = pb.DESCRIPTOR.enum_types_by_name
_MODES = enum_by_number(_ENUMS["IssueMode"], IssueMode, "ISSUE_MODE_")
_STATES = enum_by_number(_ENUMS["CodeState"], CodeState, "CODE_STATE_")
_FORMATS = enum_by_number(_ENUMS["LabelFormat"], LabelFormat, "LABEL_FORMAT_")
_MODE_NUMBERS = {mode: number for number, mode in _MODES.items()}
_STATE_NUMBERS = {state: number for number, state in _STATES.items()}
_CONTENT_TYPES = {
    pb.EXPORT_FORMAT_CSV: "text/csv; charset=utf-8",
    pb.EXPORT_FORMAT_LABELS_ZIP: "application/zip",
}


def issuance_to_proto(
    issuance: Issuance, counts: dict[CodeState, int] | None = None
) -> pb.Issuance:
    return pb.Issuance(
        issuance_id=str(issuance.issuance_id),
        subject_id=issuance.subject_id,
        province=issuance.province,
        mode=_MODE_NUMBERS[issuance.mode],  # type: ignore[arg-type]
        quantity=issuance.quantity,
        product_batch_id=issuance.product_batch_id,
        printer_subject_id=issuance.printer_subject_id,
        line_id=issuance.line_id,
        state_counts={f"CODE_STATE_{state.value}": count
                      for state, count in (counts or {}).items()},
        create_time=to_timestamp(issuance.created_at),
    )


def derivation_to_proto(derivation: Derivation) -> pb.Derivation:
    return pb.Derivation(
        issuance_id=str(derivation.issuance_id),
        parent_codes=derivation.parent_codes,
        child_codes=derivation.child_codes,
        reason=derivation.reason.value,
        subject_id=derivation.subject_id,
        create_time=to_timestamp(derivation.created_at),
    )


def _count_moves(operation: str, result: MoveResult) -> None:
    if not result.replayed:
        count_codes(operation, list(result.provinces), result.moved)


def _range(message: pb.SerialRange, present: bool) -> tuple[str, int, int] | None:
    if not present:
        return None
    return message.issuance_id, message.first_serial, message.last_serial


class CodingServicer(coding_pb2_grpc.CodingServiceServicer):
    def __init__(self, service: CodingService) -> None:
        self.service = service

    def _code(self, record: CodeRecord) -> pb.Code:
        return pb.Code(
            code=record.code,
            issuance_id=str(record.issuance_id),
            serial=record.serial,
            state=_STATE_NUMBERS[record.state],  # type: ignore[arg-type]
            product_batch_id=record.product_batch_id,
            resolver_url=self.service.url(record.code),
        )

    def _issued(self, result: IssueResult) -> tuple[pb.Issuance, list[pb.Code]]:
        if not result.replayed:
            count_codes(result.issuance.mode.value.lower(), [result.issuance.province],
                        result.issuance.quantity)
        counts = {CodeState.ISSUED: result.issuance.quantity} if not result.replayed else None
        return (issuance_to_proto(result.issuance, counts),
                [self._code(record) for record in result.codes])

    def IssueCodes(self, request: pb.IssueCodesRequest,
                   context: grpc.ServicerContext) -> pb.IssueCodesResponse:
        result = self.service.issue_codes(
            request.request_id, request.subject_id, _MODES.get(request.mode), request.quantity,
            request.product_batch_id, request.printer_subject_id, actor=current_principal(),
        )
        issuance, codes = self._issued(result)
        return pb.IssueCodesResponse(issuance=issuance, codes=codes, replayed=result.replayed)

    def GetIssuance(self, request: pb.GetIssuanceRequest,
                    context: grpc.ServicerContext) -> pb.GetIssuanceResponse:
        issuance, counts = self.service.get_issuance(request.issuance_id,
                                                     actor=current_principal())
        return pb.GetIssuanceResponse(issuance=issuance_to_proto(issuance, counts))

    def ListIssuances(self, request: pb.ListIssuancesRequest,
                      context: grpc.ServicerContext) -> pb.ListIssuancesResponse:
        page, token = self.service.list_issuances(
            request.subject_id, request.page_size, request.page_token, actor=current_principal())
        return pb.ListIssuancesResponse(
            issuances=[issuance_to_proto(issuance, counts) for issuance, counts in page],
            next_page_token=token,
        )

    def ListCodes(self, request: pb.ListCodesRequest,
                  context: grpc.ServicerContext) -> pb.ListCodesResponse:
        page, token = self.service.list_codes(
            request.issuance_id, request.page_size, request.page_token,
            _STATES.get(request.state), actor=current_principal())
        return pb.ListCodesResponse(codes=[self._code(record) for record in page],
                                    next_page_token=token)

    def ExportCodes(self, request: pb.ExportCodesRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.ExportCodesResponse]:
        if request.format not in _CONTENT_TYPES:
            raise InvalidArgument.of("format", "must be CSV or LABELS_ZIP")
        selection = self.service.export_range(
            request.issuance_id, request.first_serial, request.last_serial,
            labels=request.format == pb.EXPORT_FORMAT_LABELS_ZIP, actor=current_principal())
        total = selection.size
        content_type = _CONTENT_TYPES[request.format]
        first = True
        written = 0
        if request.format == pb.EXPORT_FORMAT_CSV:
            chunks = self._csv_chunks(selection)
        else:
            chunks = self._zip_chunks(selection)
        for data, codes_written in chunks:
            written = codes_written
            yield pb.ExportCodesResponse(
                data=data, codes_written=written, codes_total=total,
                content_type=content_type if first else "")
            first = False
        if first:  # nothing was yielded: an empty file still has a header
            yield pb.ExportCodesResponse(codes_total=total, content_type=content_type)

    def _csv_chunks(self, selection: SerialRange) -> Iterator[tuple[bytes, int]]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(("serial", "code", "resolver_url"))
        written = 0
        for rows in self.service.export_rows(selection):
            writer.writerows(rows)
            written += len(rows)
            if buffer.tell() >= EXPORT_CHUNK_BYTES:
                yield buffer.getvalue().encode(), written
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode(), written

    def _zip_chunks(self, selection: SerialRange) -> Iterator[tuple[bytes, int]]:
        pending = bytearray()
        written = 0
        for data, written in self.service.export_labels_zip(selection):
            pending += data
            if len(pending) >= EXPORT_CHUNK_BYTES:
                yield bytes(pending), written
                pending.clear()
        yield bytes(pending), written

    def MarkCodesPrinted(self, request: pb.MarkCodesPrintedRequest,
                         context: grpc.ServicerContext) -> pb.MarkCodesPrintedResponse:
        result = self.service.mark_printed(
            request.request_id, list(request.codes), _range(request.range,
                                                            request.HasField("range")),
            actor=current_principal())
        _count_moves("printed", result)
        if result.activated:
            count_codes("activated", list(result.provinces), result.activated)
        return pb.MarkCodesPrintedResponse(printed=result.moved, activated=result.activated,
                                           replayed=result.replayed)

    def ActivateCodes(self, request: pb.ActivateCodesRequest,
                      context: grpc.ServicerContext) -> pb.ActivateCodesResponse:
        result = self.service.activate(
            request.request_id, request.product_batch_id, list(request.codes),
            _range(request.range, request.HasField("range")), actor=current_principal())
        _count_moves("activated", result)
        return pb.ActivateCodesResponse(activated=result.moved, replayed=result.replayed)

    def VoidCodes(self, request: pb.VoidCodesRequest,
                  context: grpc.ServicerContext) -> pb.VoidCodesResponse:
        result = self.service.void(
            request.request_id, list(request.codes),
            _range(request.range, request.HasField("range")), request.reason,
            actor=current_principal())
        _count_moves("voided", result)
        return pb.VoidCodesResponse(voided=result.moved, replayed=result.replayed)

    def StreamCodes(self, request_iterator: Iterator[pb.StreamCodesRequest],
                    context: grpc.ServicerContext) -> Iterator[pb.StreamCodesResponse]:
        actor = current_principal()
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("message") != "open":
            raise InvalidArgument.of("open", "the first message must open the line session")
        opened = first.open
        session: LineSession = self.service.open_line(
            opened.request_id, opened.subject_id, opened.product_batch_id, opened.line_id,
            actor=actor)
        # Whatever ends the stream (client done, cancelled, broken, an error), the codes
        # sent and not acknowledged are voided.
        def end_session() -> None:
            session.close()

        context.add_callback(end_session)
        try:
            yield pb.StreamCodesResponse(
                opened=pb.LineOpened(issuance_id=str(session.issuance_id)))
            for message in request_iterator:
                kind = message.WhichOneof("message")
                if kind == "request":
                    records = session.send(message.request.count)
                    count_codes("production_line", [session.issuance.province], len(records))
                    yield pb.StreamCodesResponse(codes=pb.CodesSent(
                        codes=[self._code(record) for record in records]))
                elif kind == "acknowledge":
                    printed = session.acknowledge(list(message.acknowledge.codes))
                    for operation in ("printed", "activated"):
                        count_codes(operation, [session.issuance.province], printed)
                    yield pb.StreamCodesResponse(acknowledged=pb.PrintAcknowledged(
                        printed=printed, outstanding=len(session.outstanding)))
                else:
                    raise InvalidArgument.of("message", "a session is opened only once")
        finally:
            voided = session.close()
            if voided:
                log.info("production line session %s ended with %d unacknowledged codes "
                         "voided", session.issuance_id, voided)

    def VerifyCode(self, request: pb.VerifyCodeRequest,
                   context: grpc.ServicerContext) -> pb.VerifyCodeResponse:
        found = self.service.verify(request.code, actor=current_principal())
        code_verifications_total.labels(
            found.state.value if found.state else
            "malformed" if not found.well_formed else
            "bad_check" if not found.check_valid else "unknown").inc()
        return pb.VerifyCodeResponse(
            code=found.code, well_formed=found.well_formed, check_valid=found.check_valid,
            exists=found.exists,
            state=_STATE_NUMBERS[found.state] if found.state else 0,  # type: ignore[arg-type]
            province=found.province, summary=found.summary, subject_id=found.subject_id,
            product_batch_id=found.product_batch_id,
        )

    def DeriveCodes(self, request: pb.DeriveCodesRequest,
                    context: grpc.ServicerContext) -> pb.DeriveCodesResponse:
        result = self.service.derive(
            request.request_id, request.subject_id, list(request.parent_codes),
            request.product_batch_id, request.quantity, request.reason,
            actor=current_principal())
        issuance, codes = self._issued(result)
        return pb.DeriveCodesResponse(issuance=issuance, codes=codes, replayed=result.replayed)

    def GetLineage(self, request: pb.GetLineageRequest,
                   context: grpc.ServicerContext) -> pb.GetLineageResponse:
        lineage = self.service.lineage(request.code, request.depth, actor=current_principal())
        return pb.GetLineageResponse(
            code=lineage.code,
            ancestors=[derivation_to_proto(d) for d in lineage.ancestors],
            descendants=[derivation_to_proto(d) for d in lineage.descendants],
        )

    def RenderLabel(self, request: pb.RenderLabelRequest,
                    context: grpc.ServicerContext) -> pb.RenderLabelResponse:
        fmt = _FORMATS.get(request.format)
        if fmt is None:
            raise InvalidArgument.of("format", "must be SVG, PNG, ZPL or PDF")
        data, url = self.service.render_label(request.code, fmt, actor=current_principal())
        return pb.RenderLabelResponse(data=data, content_type=fmt.content_type,
                                      resolver_url=url)

    def RenderLabelSheet(self, request: pb.RenderLabelSheetRequest,
                         context: grpc.ServicerContext) -> pb.RenderLabelSheetResponse:
        data, labels, pages = self.service.render_sheet(
            list(request.codes), _range(request.range, request.HasField("range")),
            actor=current_principal())
        return pb.RenderLabelSheetResponse(data=data, labels=labels, pages=pages)
