"""ProvinceBridgeService over the bridge's use cases: proto in, domain out, and back."""

from __future__ import annotations

from datetime import UTC

import grpc

from agritrace.bridge.v1 import bridge_pb2 as pb
from agritrace.bridge.v1 import bridge_pb2_grpc
from agritrace_bridge.domain.conformance import Outcome as CheckOutcome
from agritrace_bridge.domain.imports import ImportRun, Outcome
from agritrace_bridge.domain.status import DirectionStatus, Severity
from agritrace_bridge.service_layer.imports import HistoricalImport
from agritrace_bridge.service_layer.onboarding import Onboarding
from agritrace_bridge.service_layer.outbound import OutboundQueue
from agritrace_bridge.service_layer.security import SecurityReports
from agritrace_bridge.service_layer.status import StatusQuery
from agritrace_kernel.auth.principal import current_principal
from agritrace_kernel.grpc_kit.enums import enum_by_number
from agritrace_kernel.grpc_kit.timestamps import to_timestamp
from agritrace_kernel.paging import page_size

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ProvinceBridgeService"].full_name
_ENUMS = pb.DESCRIPTOR.enum_types_by_name
_OUTCOMES = enum_by_number(_ENUMS["ImportOutcome"], Outcome, "IMPORT_OUTCOME_")
_OUTCOME_NUMBERS = {Outcome.CREATED: pb.IMPORT_OUTCOME_CREATED,
                    Outcome.MERGED: pb.IMPORT_OUTCOME_MERGED,
                    Outcome.CONFLICT: pb.IMPORT_OUTCOME_CONFLICT,
                    Outcome.REJECTED: pb.IMPORT_OUTCOME_REJECTED}
_SEVERITIES = enum_by_number(_ENUMS["Severity"], Severity, "SEVERITY_")
_STATES = {"RUNNING": pb.IMPORT_STATE_RUNNING, "FAILED": pb.IMPORT_STATE_FAILED,
           "COMPLETED": pb.IMPORT_STATE_COMPLETED}
_CHECKS = {CheckOutcome.PASSED: pb.CHECK_OUTCOME_PASSED,
           CheckOutcome.FAILED: pb.CHECK_OUTCOME_FAILED,
           CheckOutcome.NOT_APPLICABLE: pb.CHECK_OUTCOME_NOT_APPLICABLE}
REPORT_PAGE_DEFAULT, REPORT_PAGE_MAX = 100, 1000


def run_to_proto(run: ImportRun) -> pb.ImportRun:
    message = pb.ImportRun(
        import_id=run.import_id, province=run.province, state=_STATES[run.state.value],
        pages=run.pages, total_size=run.total_size, created=run.counts.created,
        merged=run.counts.merged, conflict=run.counts.conflict,
        rejected=run.counts.rejected, last_error=run.last_error, attempts=run.attempts,
        start_time=to_timestamp(run.started_at), update_time=to_timestamp(run.updated_at))
    if run.finished_at is not None:
        message.finish_time.CopyFrom(to_timestamp(run.finished_at))
    return message


def direction_to_proto(status: DirectionStatus) -> pb.DirectionStatus:
    message = pb.DirectionStatus(
        queue_depth=status.queue_depth, dead_letters=status.dead_letters,
        lag_seconds=status.lag_seconds, delivered=status.delivered, errors=status.errors,
        last_error=status.last_error)
    if status.last_success_at is not None:
        message.last_success_time.CopyFrom(to_timestamp(status.last_success_at))
    return message


def _credentials(context: grpc.ServicerContext) -> str:
    """The caller's bearer token, for the sso calls the bridge makes on its behalf."""
    for key, value in context.invocation_metadata():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value.removeprefix("Bearer ")
    return ""


class ProvinceBridgeServicer(bridge_pb2_grpc.ProvinceBridgeServiceServicer):
    def __init__(self, imports: HistoricalImport, status: StatusQuery,
                 outbound: OutboundQueue, security: SecurityReports,
                 onboarding: Onboarding) -> None:
        self._imports = imports
        self._status = status
        self._outbound = outbound
        self._security = security
        self._onboarding = onboarding

    def GetStatus(self, request: pb.GetStatusRequest,
                  context: grpc.ServicerContext) -> pb.GetStatusResponse:
        status = self._status.get(current_principal())
        answer = pb.GetStatusResponse(
            province=status.province, adapter=status.adapter,
            onboarding_stage=status.onboarding_stage,
            inbound=direction_to_proto(status.inbound),
            outbound=direction_to_proto(status.outbound))
        if status.latest_import is not None:
            answer.latest_import.CopyFrom(run_to_proto(status.latest_import))
        return answer

    def StartImport(self, request: pb.StartImportRequest,
                    context: grpc.ServicerContext) -> pb.StartImportResponse:
        run = self._imports.start(current_principal(), request.request_id)
        return pb.StartImportResponse(run=run_to_proto(run))

    def GetImportReport(self, request: pb.GetImportReportRequest,
                        context: grpc.ServicerContext) -> pb.GetImportReportResponse:
        size = page_size(request.page_size, REPORT_PAGE_DEFAULT, REPORT_PAGE_MAX)
        page = self._imports.report(current_principal(), request.import_id,
                                    request.page_token, size,
                                    _OUTCOMES.get(request.outcome))
        return pb.GetImportReportResponse(
            run=run_to_proto(page.run), next_page_token=page.next_page_token,
            outcomes=[pb.ImportRecordOutcome(
                source_record_id=o.source_record_id, outcome=_OUTCOME_NUMBERS[o.outcome],
                subject_id=o.subject_id, field=o.field, reason=o.reason)
                for o in page.outcomes])

    def ReplayDeadLetters(self, request: pb.ReplayDeadLettersRequest,
                          context: grpc.ServicerContext) -> pb.ReplayDeadLettersResponse:
        replayed = self._outbound.replay_dead_letters(current_principal(),
                                                      list(request.record_ids))
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    def ReportSecurityEvent(self, request: pb.ReportSecurityEventRequest,
                            context: grpc.ServicerContext) -> pb.ReportSecurityEventResponse:
        event, replayed = self._security.report(
            current_principal(), request_id=request.request_id, category=request.category,
            severity=_SEVERITIES.get(request.severity), summary=request.summary,
            details=request.details,
            occur_time=request.occur_time.ToDatetime(tzinfo=UTC)
            if request.HasField("occur_time") else None)
        return pb.ReportSecurityEventResponse(
            event_id=event.event_id, record_time=to_timestamp(event.recorded_at),
            replayed=replayed)

    def RunConformance(self, request: pb.RunConformanceRequest,
                       context: grpc.ServicerContext) -> pb.RunConformanceResponse:
        outcome = self._onboarding.run_conformance(current_principal(), _credentials(context))
        report = outcome.report
        return pb.RunConformanceResponse(
            results=[pb.CheckResult(name=r.name, outcome=_CHECKS[r.outcome], detail=r.detail,
                                    seconds=r.seconds) for r in report.results],
            passed=report.passed, failed_checks=report.failed_checks,
            onboarding_stage=outcome.stage, stage_change=outcome.stage_change)
