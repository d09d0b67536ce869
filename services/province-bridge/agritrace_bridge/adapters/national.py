"""The national services (registry, flow) over gRPC, called as the province's platform
client (the channel adds its token; sso signs it in and keeps it fresh)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import grpc
from google.protobuf import json_format

from agritrace.flow.v1 import flow_pb2 as fpb
from agritrace.flow.v1 import flow_pb2_grpc
from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace.registry.v1 import registry_pb2_grpc
from agritrace_bridge.contract import Subject, TraceRecord
from agritrace_bridge.domain.imports import Outcome, RecordOutcome
from agritrace_bridge.domain.inbound import CaptureOutcome
from agritrace_bridge.service_layer.national import (
    NationalError,
    NationalRefused,
    NationalUnavailable,
)
from agritrace_kernel import errors
from agritrace_kernel.grpc_kit.status import domain_error_from

TIMEOUT_SECONDS = 120.0
_OUTCOMES = {rpb.IMPORT_OUTCOME_CREATED: Outcome.CREATED,
             rpb.IMPORT_OUTCOME_MERGED: Outcome.MERGED,
             rpb.IMPORT_OUTCOME_CONFLICT: Outcome.CONFLICT,
             rpb.IMPORT_OUTCOME_REJECTED: Outcome.REJECTED}
# A second stream of one import id is refused while the first is held (e.g. the registry
# has not yet noticed that a killed bridge's stream is gone): it frees up soon.
_TRANSIENT_REASONS = frozenset({"IMPORT_ALREADY_RUNNING"})


def national_error(error: grpc.RpcError, service: str) -> NationalError:
    """A failed call as the bridge's port error: retryable or not."""
    if not callable(getattr(error, "code", None)):
        return NationalUnavailable(str(error), reason="UNAVAILABLE")
    domain = domain_error_from(error, service)
    if isinstance(domain, errors.Unavailable) or domain.reason in _TRANSIENT_REASONS or \
            error.code() is grpc.StatusCode.ABORTED:
        return NationalUnavailable(domain.message, reason=domain.reason)
    return NationalRefused(domain.message, reason=domain.reason)


def _registration(subject: Subject) -> rpb.SubjectRegistration:
    # An unknown kind goes out as UNSPECIFIED, so the registry rejects it with a reason.
    kind = rpb.SubjectKind.Value(f"SUBJECT_KIND_{subject.kind}") \
        if f"SUBJECT_KIND_{subject.kind}" in rpb.SubjectKind.keys() else 0  # noqa: SIM118 (an enum wrapper)
    return rpb.SubjectRegistration(
        kind=kind, name=subject.name,  # type: ignore[arg-type]
        credit_code=subject.credit_code, resident_id=subject.resident_id,
        division_code=subject.division_code, address=subject.address,
        legal_representative=subject.legal_representative,
        contact_phone=subject.contact_phone)


class GrpcSubjectImporter:
    """SubjectImporter over RegistryService.ImportSubjects: one stream per page (a page is
    at most 1000 records, within the 5000 a message may hold), answered once committed."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub: Any = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]

    def import_page(self, import_id: str, province: str,
                    subjects: Sequence[Subject]) -> list[RecordOutcome]:
        if not subjects:
            return []
        request = rpb.ImportSubjectsRequest(
            import_id=import_id, source_province=province,
            records=[rpb.ImportRecord(source_record_id=s.source_record_id,
                                      registration=_registration(s)) for s in subjects])
        results: list[RecordOutcome] = []
        try:
            for answer in self._stub.ImportSubjects(iter([request]), timeout=TIMEOUT_SECONDS):
                results.extend(RecordOutcome(
                    r.source_record_id, _OUTCOMES.get(r.outcome, Outcome.REJECTED),
                    r.subject_id, r.field, r.reason) for r in answer.results)
        except grpc.RpcError as error:
            raise national_error(error, "registry") from None
        return results


def trace_message(province: str, record: TraceRecord) -> fpb.CaptureRecord:
    """The contract's record as flow's InternalTraceRecord: the activity's fields carry the
    same names in both, under the activity's type in lower case."""
    message = fpb.InternalTraceRecord(source_province=province,
                                      source_record_id=record.record_id,
                                      batch_id=record.batch_id)
    message.occur_time.FromDatetime(record.occur_time.astimezone(UTC))
    activity = record.activity
    json_format.ParseDict({activity.type.lower(): activity.model_dump(exclude={"type"})},
                          message)
    return fpb.CaptureRecord(internal_trace=fpb.RecordInternalTraceRequest(record=message))


class GrpcTraceCapture:
    """TraceCapture over FlowService.CaptureRecords: one message per call, answered with
    every record's outcome."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub: Any = flow_pb2_grpc.FlowServiceStub(channel)  # type: ignore[no-untyped-call]

    def capture(self, province: str, records: Sequence[TraceRecord]) -> list[CaptureOutcome]:
        request = fpb.CaptureRecordsRequest(records=[trace_message(province, r)
                                                     for r in records])
        outcomes: list[CaptureOutcome] = []
        try:
            for answer in self._stub.CaptureRecords(iter([request]), timeout=TIMEOUT_SECONDS):
                outcomes.extend(CaptureOutcome(
                    r.outcome, f"{r.error_code}: {r.reason}" if r.outcome == "REFUSED" else "")
                    for r in answer.results)
        except grpc.RpcError as error:
            raise national_error(error, "flow") from None
        return outcomes
