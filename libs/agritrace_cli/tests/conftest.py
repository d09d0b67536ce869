"""A small in-memory RegistryService on a real gRPC server, and a CLI runner pointed at it.

The fake is deterministic: subject ids count up, outcomes follow simple rules, and it keeps a
log of what it received so tests can check what the CLI sent (and what it skipped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from typer.testing import CliRunner, Result

from agritrace.registry.v1 import registry_pb2, registry_pb2_grpc
from agritrace_cli.main import app

KNOWN_DIVISION_CODES = frozenset({"330102", "330105", "330106", "110101"})
_DEFAULT_PAGE_SIZE = 50


def mask(value: str, keep_start: int, keep_end: int) -> str:
    if len(value) <= keep_start + keep_end:
        return value
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]


def abort_with_bad_request(
    context: grpc.ServicerContext,
    message: str,
    violations: Sequence[tuple[str, str]],
    reason: str,
) -> None:
    """Aborts with INVALID_ARGUMENT carrying BadRequest and ErrorInfo details."""
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=name, description=description)
            for name, description in violations
        ]
    )
    error_info = error_details_pb2.ErrorInfo(reason=reason, domain="registry.agritrace.example")
    details = []
    for detail in (bad_request, error_info):
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=details)
    context.abort_with_status(rpc_status.to_status(status))


@dataclass
class ImportCall:
    """What one ImportSubjects call received."""

    import_id: str = ""
    source_province: str = ""
    batch_sizes: list[int] = field(default_factory=list)
    source_record_ids: list[str] = field(default_factory=list)


class FakeRegistry(registry_pb2_grpc.RegistryServiceServicer):
    """In-memory registry with just enough rules to exercise the CLI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.subjects: dict[str, registry_pb2.Subject] = {}
        self._subject_by_key: dict[str, str] = {}
        self._registrations_by_request_id: dict[str, str] = {}
        self._import_results: dict[tuple[str, str], registry_pb2.ImportRecordResult] = {}
        self.import_calls: list[ImportCall] = []
        self.list_page_tokens: list[str] = []
        self.received_metadata: list[dict[str, str]] = []
        # When set, ImportSubjects fails with UNAVAILABLE after answering this many batches.
        self.fail_import_after_batches: int | None = None
        # When set, ImportSubjects leaves the last result out of every answer (a broken server).
        self.drop_last_result_of_each_batch = False

    # ------------------------------------------------------------------ helpers

    def _remember_metadata(self, context: grpc.ServicerContext) -> None:
        self.received_metadata.append(
            {key: str(value) for key, value in context.invocation_metadata()}
        )

    @staticmethod
    def _identity_key(registration: registry_pb2.SubjectRegistration) -> str:
        if registration.credit_code:
            return "credit:" + registration.credit_code
        if registration.resident_id:
            return "resident:" + registration.resident_id
        return ""

    def _create_subject(
        self, registration: registry_pb2.SubjectRegistration, source: str, record_id: str
    ) -> registry_pb2.Subject:
        subject_id = f"S{len(self.subjects) + 1:016d}"
        subject = registry_pb2.Subject(
            subject_id=subject_id,
            kind=registration.kind,
            name=registration.name,
            credit_code=registration.credit_code,
            resident_id_masked=mask(registration.resident_id, 6, 4),
            division_code=registration.division_code,
            address=registration.address,
            legal_representative=registration.legal_representative,
            contact_phone_masked=mask(registration.contact_phone, 3, 4),
            status=registry_pb2.SUBJECT_STATUS_PENDING_REVIEW,
            provenance=[registry_pb2.Provenance(source=source, source_record_id=record_id)],
            version=1,
        )
        subject.create_time.FromSeconds(1_700_000_000)
        subject.update_time.FromSeconds(1_700_000_000)
        self.subjects[subject_id] = subject
        key = self._identity_key(registration)
        if key:
            self._subject_by_key[key] = subject_id
        return subject

    def add_subject(
        self,
        name: str,
        division_code: str = "330102",
        kind: registry_pb2.SubjectKind = registry_pb2.SUBJECT_KIND_ENTERPRISE,
        credit_code: str = "",
        resident_id: str = "",
    ) -> registry_pb2.Subject:
        with self._lock:
            return self._create_subject(
                registry_pb2.SubjectRegistration(
                    kind=kind,
                    name=name,
                    division_code=division_code,
                    credit_code=credit_code,
                    resident_id=resident_id,
                ),
                "national",
                "",
            )

    def _find(self, subject_id: str, context: grpc.ServicerContext) -> registry_pb2.Subject:
        subject = self.subjects.get(subject_id)
        if subject is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no subject {subject_id}")
        assert subject is not None
        return subject

    # ------------------------------------------------------------------ unary calls

    def RegisterSubject(
        self, request: registry_pb2.RegisterSubjectRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RegisterSubjectResponse:
        self._remember_metadata(context)
        registration = request.registration
        violations: list[tuple[str, str]] = []
        if not registration.name:
            violations.append(("registration.name", "a name is required"))
        if registration.division_code not in KNOWN_DIVISION_CODES:
            violations.append(
                ("registration.division_code", "not a county-level division code in GB/T 2260")
            )
        if violations:
            abort_with_bad_request(
                context, "the registration is invalid", violations, "INVALID_REGISTRATION"
            )
        with self._lock:
            known_id = self._registrations_by_request_id.get(request.request_id)
            if known_id is not None:
                return registry_pb2.RegisterSubjectResponse(subject=self.subjects[known_id])
            key = self._identity_key(registration)
            if key in self._subject_by_key:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "identity key already registered")
            subject = self._create_subject(registration, "national", "")
            self._registrations_by_request_id[request.request_id] = subject.subject_id
        return registry_pb2.RegisterSubjectResponse(subject=subject)

    def GetSubject(
        self, request: registry_pb2.GetSubjectRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetSubjectResponse:
        self._remember_metadata(context)
        return registry_pb2.GetSubjectResponse(subject=self._find(request.subject_id, context))

    def LookupSubject(
        self, request: registry_pb2.LookupSubjectRequest, context: grpc.ServicerContext
    ) -> registry_pb2.LookupSubjectResponse:
        self._remember_metadata(context)
        which = request.WhichOneof("key")
        key = f"credit:{request.credit_code}" if which == "credit_code" else ""
        if which == "resident_id":
            key = f"resident:{request.resident_id}"
        subject_id = self._subject_by_key.get(key)
        if subject_id is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no subject holds that key")
        assert subject_id is not None
        return registry_pb2.LookupSubjectResponse(subject=self.subjects[subject_id])

    def ListSubjects(
        self, request: registry_pb2.ListSubjectsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListSubjectsResponse:
        self._remember_metadata(context)
        self.list_page_tokens.append(request.page_token)
        page_size = request.page_size or _DEFAULT_PAGE_SIZE
        after_subject_id = request.page_token.removeprefix("after:")
        matching = [
            subject
            for subject_id, subject in sorted(self.subjects.items())
            if subject_id > after_subject_id
            and subject.division_code.startswith(request.division_prefix)
            and request.kind in (registry_pb2.SUBJECT_KIND_UNSPECIFIED, subject.kind)
            and request.status in (registry_pb2.SUBJECT_STATUS_UNSPECIFIED, subject.status)
        ]
        page = matching[:page_size]
        next_token = f"after:{page[-1].subject_id}" if len(matching) > page_size else ""
        return registry_pb2.ListSubjectsResponse(subjects=page, next_page_token=next_token)

    def ReviewSubject(
        self, request: registry_pb2.ReviewSubjectRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ReviewSubjectResponse:
        self._remember_metadata(context)
        moves = {
            registry_pb2.REVIEW_DECISION_APPROVE: (
                registry_pb2.SUBJECT_STATUS_PENDING_REVIEW,
                registry_pb2.SUBJECT_STATUS_APPROVED,
            ),
            registry_pb2.REVIEW_DECISION_REJECT: (
                registry_pb2.SUBJECT_STATUS_PENDING_REVIEW,
                registry_pb2.SUBJECT_STATUS_REJECTED,
            ),
            registry_pb2.REVIEW_DECISION_SUSPEND: (
                registry_pb2.SUBJECT_STATUS_APPROVED,
                registry_pb2.SUBJECT_STATUS_SUSPENDED,
            ),
            registry_pb2.REVIEW_DECISION_REINSTATE: (
                registry_pb2.SUBJECT_STATUS_SUSPENDED,
                registry_pb2.SUBJECT_STATUS_APPROVED,
            ),
        }
        with self._lock:
            subject = self._find(request.subject_id, context)
            required_status, new_status = moves[request.decision]
            if subject.status != required_status:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "illegal review move")
            subject.status = new_status
            subject.status_reason = request.reason
            subject.version += 1
        return registry_pb2.ReviewSubjectResponse(subject=subject)

    # ------------------------------------------------------------------ import

    def _import_one(
        self, import_id: str, province: str, record: registry_pb2.ImportRecord
    ) -> registry_pb2.ImportRecordResult:
        remembered = self._import_results.get((import_id, record.source_record_id))
        if remembered is not None:
            return remembered
        registration = record.registration
        result = registry_pb2.ImportRecordResult(source_record_id=record.source_record_id)
        key = self._identity_key(registration)
        if registration.kind == registry_pb2.SUBJECT_KIND_UNSPECIFIED:
            result.outcome = registry_pb2.IMPORT_OUTCOME_REJECTED
            result.field, result.reason = "kind", "kind is required"
        elif registration.division_code not in KNOWN_DIVISION_CODES:
            result.outcome = registry_pb2.IMPORT_OUTCOME_REJECTED
            result.field, result.reason = "division_code", "unknown division code"
        elif not key:
            result.outcome = registry_pb2.IMPORT_OUTCOME_REJECTED
            result.field, result.reason = "credit_code", "an identity key is required"
        elif key in self._subject_by_key:
            known = self.subjects[self._subject_by_key[key]]
            result.subject_id = known.subject_id
            if known.name == registration.name:
                result.outcome = registry_pb2.IMPORT_OUTCOME_MERGED
            else:
                result.outcome = registry_pb2.IMPORT_OUTCOME_CONFLICT
                result.field = "name"
                # A careless server quoting personal data: the CLI must not pass it on.
                identity = registration.resident_id or registration.credit_code
                result.reason = f"{identity} is registered under another name"
        else:
            subject = self._create_subject(
                registration, f"province:{province}", record.source_record_id
            )
            result.outcome = registry_pb2.IMPORT_OUTCOME_CREATED
            result.subject_id = subject.subject_id
        self._import_results[(import_id, record.source_record_id)] = result
        return result

    def ImportSubjects(
        self,
        request_iterator: Iterable[registry_pb2.ImportSubjectsRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[registry_pb2.ImportSubjectsResponse]:
        self._remember_metadata(context)
        call = ImportCall()
        self.import_calls.append(call)
        summary = registry_pb2.ImportSummary()
        for request in request_iterator:
            if not call.import_id:
                if not request.import_id or not request.source_province:
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "import_id and source_province are required on the first message",
                    )
                call.import_id, call.source_province = request.import_id, request.source_province
            call.batch_sizes.append(len(request.records))
            with self._lock:
                results = []
                for record in request.records:
                    call.source_record_ids.append(record.source_record_id)
                    results.append(self._import_one(call.import_id, call.source_province, record))
            if self.drop_last_result_of_each_batch:
                results = results[:-1]
            summary.received += len(results)
            for result in results:
                if result.outcome == registry_pb2.IMPORT_OUTCOME_CREATED:
                    summary.created += 1
                elif result.outcome == registry_pb2.IMPORT_OUTCOME_MERGED:
                    summary.merged += 1
                elif result.outcome == registry_pb2.IMPORT_OUTCOME_CONFLICT:
                    summary.conflicts += 1
                elif result.outcome == registry_pb2.IMPORT_OUTCOME_REJECTED:
                    summary.rejected += 1
            yield registry_pb2.ImportSubjectsResponse(
                import_id=call.import_id, results=results, summary=summary
            )
            if (
                self.fail_import_after_batches is not None
                and len(call.batch_sizes) >= self.fail_import_after_batches
            ):
                context.abort(grpc.StatusCode.UNAVAILABLE, "the fake registry is going away")
        yield registry_pb2.ImportSubjectsResponse(
            import_id=call.import_id, summary=summary, done=True
        )


@dataclass(frozen=True)
class RunningRegistry:
    fake: FakeRegistry
    address: str


@pytest.fixture
def registry() -> Iterator[RunningRegistry]:
    """A FakeRegistry served on a free loopback port for the duration of one test."""
    fake = FakeRegistry()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_servicer: Callable[[FakeRegistry, grpc.Server], None] = (
        registry_pb2_grpc.add_RegistryServiceServicer_to_server
    )
    add_servicer(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield RunningRegistry(fake, f"127.0.0.1:{port}")
    finally:
        server.stop(grace=None)


CliInvoker = Callable[..., Result]


@pytest.fixture
def run_cli(registry: RunningRegistry) -> CliInvoker:
    """Runs `agritrace --address <fake> ARGS...` in-process; stdin from `input`."""
    runner = CliRunner(env={"COLUMNS": "200", "AGRITRACE_ADDRESS": None, "AGRITRACE_TOKEN": None})

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, ["--address", registry.address, *args], input=input, env=env)

    return invoke
