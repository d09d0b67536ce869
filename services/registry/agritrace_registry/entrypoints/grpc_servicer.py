"""The gRPC face of the registry: translates messages to use-case calls and back. No business
rules here; domain errors are mapped to statuses by the kernel's interceptor."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc

from agritrace.registry.v1 import registry_pb2 as pb
from agritrace.registry.v1 import registry_pb2_grpc
from agritrace_kernel.auth.principal import current_principal
from agritrace_kernel.errors import InvalidArgument
from agritrace_kernel.grpc_kit.enums import enum_by_number
from agritrace_kernel.grpc_kit.timestamps import to_timestamp
from agritrace_registry.domain.model import (
    RegistrationInput,
    ReviewDecision,
    Subject,
    SubjectKind,
    SubjectStatus,
)
from agritrace_registry.service_layer.importer import (
    ImportRecordInput,
    ImportSummary,
    RecordResult,
    SubjectImporter,
)
from agritrace_registry.service_layer.ports import ImportRun, SubjectQuery
from agritrace_registry.service_layer.services import RegistryService

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RegistryService"].full_name


_ENUMS = pb.DESCRIPTOR.enum_types_by_name
_KINDS = enum_by_number(_ENUMS["SubjectKind"], SubjectKind, "SUBJECT_KIND_")
_STATUSES = enum_by_number(_ENUMS["SubjectStatus"], SubjectStatus, "SUBJECT_STATUS_")
_DECISIONS = enum_by_number(_ENUMS["ReviewDecision"], ReviewDecision, "REVIEW_DECISION_")
_KIND_NUMBERS = {kind: number for number, kind in _KINDS.items()}
_STATUS_NUMBERS = {status: number for number, status in _STATUSES.items()}


def kind_from_proto(value: int) -> SubjectKind | None:
    return _KINDS.get(value)


def status_from_proto(value: int) -> SubjectStatus | None:
    return _STATUSES.get(value)


def decision_from_proto(value: int) -> ReviewDecision | None:
    return _DECISIONS.get(value)


def registration_from_proto(message: pb.SubjectRegistration) -> RegistrationInput:
    return RegistrationInput(
        kind=kind_from_proto(message.kind),
        name=message.name,
        credit_code=message.credit_code,
        resident_id=message.resident_id,
        division_code=message.division_code,
        address=message.address,
        legal_representative=message.legal_representative,
        contact_phone=message.contact_phone,
    )


def subject_to_proto(subject: Subject) -> pb.Subject:
    return pb.Subject(
        subject_id=subject.subject_id,
        kind=_KIND_NUMBERS[subject.kind],  # type: ignore[arg-type]
        name=subject.name,
        credit_code=subject.credit_code or "",
        resident_id_masked=subject.resident_id_masked,
        division_code=subject.division_code,
        address=subject.address,
        legal_representative=subject.legal_representative,
        contact_phone_masked=subject.contact_phone_masked,
        status=_STATUS_NUMBERS[subject.status],  # type: ignore[arg-type]
        status_reason=subject.status_reason,
        review_flags=subject.review_flags,
        provenance=[
            pb.Provenance(
                source=p.source,
                source_record_id=p.source_record_id,
                first_seen_time=to_timestamp(p.first_seen),
            )
            for p in subject.provenance
        ],
        version=subject.version,
        suspected_duplicate_ids=subject.suspected_duplicate_ids,
        create_time=to_timestamp(subject.created_at),
        update_time=to_timestamp(subject.updated_at),
    )


_OUTCOMES = {name.removeprefix("IMPORT_OUTCOME_"): number
             for name, number in pb.ImportOutcome.items()}


def _result_to_proto(result: RecordResult) -> pb.ImportRecordResult:
    return pb.ImportRecordResult(
        source_record_id=result.source_record_id,
        outcome=_OUTCOMES[result.outcome],  # type: ignore[arg-type]
        subject_id=result.subject_id,
        field=result.field,
        reason=result.reason,
        replayed=result.replayed,
    )


def _summary_to_proto(summary: ImportSummary) -> pb.ImportSummary:
    return pb.ImportSummary(
        received=summary.received,
        created=summary.created,
        merged=summary.merged,
        conflicts=summary.conflicts,
        rejected=summary.rejected,
    )


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, service: RegistryService, importer: SubjectImporter) -> None:
        self._service = service
        self._importer = importer

    def RegisterSubject(
        self, request: pb.RegisterSubjectRequest, context: grpc.ServicerContext
    ) -> pb.RegisterSubjectResponse:
        subject = self._service.register_subject(
            request.request_id,
            registration_from_proto(request.registration),
            actor=current_principal(),
        )
        return pb.RegisterSubjectResponse(subject=subject_to_proto(subject))

    def GetSubject(
        self, request: pb.GetSubjectRequest, context: grpc.ServicerContext
    ) -> pb.GetSubjectResponse:
        return pb.GetSubjectResponse(
            subject=subject_to_proto(
                self._service.get_subject(request.subject_id, actor=current_principal())
            )
        )

    def LookupSubject(
        self, request: pb.LookupSubjectRequest, context: grpc.ServicerContext
    ) -> pb.LookupSubjectResponse:
        subject = self._service.lookup_subject(
            credit_code=request.credit_code,
            resident_id=request.resident_id,
            actor=current_principal(),
        )
        return pb.LookupSubjectResponse(subject=subject_to_proto(subject))

    def ListSubjects(
        self, request: pb.ListSubjectsRequest, context: grpc.ServicerContext
    ) -> pb.ListSubjectsResponse:
        query = SubjectQuery(
            division_prefix=request.division_prefix.strip(),
            kind=kind_from_proto(request.kind),
            status=status_from_proto(request.status),
        )
        subjects, next_token = self._service.list_subjects(
            query, request.page_size, request.page_token, actor=current_principal()
        )
        return pb.ListSubjectsResponse(
            subjects=[subject_to_proto(s) for s in subjects], next_page_token=next_token
        )

    def UpdateSubject(
        self, request: pb.UpdateSubjectRequest, context: grpc.ServicerContext
    ) -> pb.UpdateSubjectResponse:
        subject = self._service.update_subject(
            request.subject_id,
            registration_from_proto(request.registration),
            list(request.update_mask.paths),
            request.version,
            actor=current_principal(),
        )
        return pb.UpdateSubjectResponse(subject=subject_to_proto(subject))

    def ReviewSubject(
        self, request: pb.ReviewSubjectRequest, context: grpc.ServicerContext
    ) -> pb.ReviewSubjectResponse:
        subject = self._service.review_subject(
            request.subject_id,
            decision_from_proto(request.decision),
            request.reason,
            request.version,
            actor=current_principal(),
        )
        return pb.ReviewSubjectResponse(subject=subject_to_proto(subject))

    def ImportSubjects(
        self, request_iterator: Iterator[pb.ImportSubjectsRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ImportSubjectsResponse]:
        # A two-stage pipeline: while batch N is applied (classified and written to the
        # database) on a helper thread, this thread reads and validates batch N+1, so database
        # time overlaps with Python time. Batches are still applied one at a time, in order.
        run: ImportRun | None = None
        summary = ImportSummary()
        applying: Future[list[RecordResult]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-apply") as executor:
            try:
                for batch_index, message in enumerate(request_iterator):
                    if run is None:
                        run = self._importer.begin(
                            message.import_id, message.source_province, actor=current_principal()
                        )
                    prepared = self._importer.prepare([
                        ImportRecordInput(r.source_record_id,
                                          registration_from_proto(r.registration))
                        for r in message.records
                    ])
                    if applying is not None:
                        yield self._batch_response(run, batch_index - 1, applying, summary)
                    applying = executor.submit(
                        contextvars.copy_context().run,
                        self._importer.apply, run, prepared, summary,
                    )
                if applying is not None and run is not None:
                    yield self._batch_response(run, batch_index, applying, summary)
                    applying = None
                if run is None:
                    raise InvalidArgument.of("import_id", "the stream carried no message")
            finally:
                if applying is not None:
                    applying.exception()  # let a batch in flight finish before closing the run
                # Announce what was done even if the client went away mid-stream: the batches
                # committed so far are real.
                if run is not None:
                    self._importer.finish(run, summary)
        yield pb.ImportSubjectsResponse(
            import_id=run.import_id, summary=_summary_to_proto(summary), done=True
        )

    @staticmethod
    def _batch_response(
        run: ImportRun,
        batch_index: int,
        applying: Future[list[RecordResult]],
        summary: ImportSummary,
    ) -> pb.ImportSubjectsResponse:
        results = applying.result()
        return pb.ImportSubjectsResponse(
            import_id=run.import_id,
            batch_index=batch_index,
            results=[_result_to_proto(r) for r in results],
            summary=_summary_to_proto(summary),
        )
