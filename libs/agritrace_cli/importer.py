"""Streaming a subject file to RegistryService.ImportSubjects.

The request side runs on gRPC's sending thread: it reads the file lazily, batch by batch, and
keeps at most `max_batches_in_flight` batches unanswered, so neither the file nor the answers
pile up in memory. The answer side runs on the calling thread: each answer covers the oldest
unanswered batch (the proto promises one answer per batch, in order, with the records in
order), its lines go to the report, then the checkpoint moves past that batch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Final, Protocol

import grpc

from agritrace.registry.v1 import registry_pb2, registry_pb2_grpc
from agritrace_cli.checkpoint import ImportCheckpoint, OutcomeCounts
from agritrace_cli.client import Metadata
from agritrace_cli.files import SubjectRecord, iter_subject_records
from agritrace_cli.report import ReportLine, ReportWriter

MAX_BATCH_SIZE: Final = 5000  # ImportSubjectsRequest allows at most 5000 records.
MAX_IMPORT_ID_LENGTH: Final = 64
DEFAULT_BATCHES_IN_FLIGHT: Final = 4
_OUTCOME_PREFIX: Final = "IMPORT_OUTCOME_"
_REDACTED: Final = "***"
_WAIT_SLICE_SECONDS: Final = 0.1


class ImportProtocolError(Exception):
    """The server's answers do not line up with the batches sent."""


class ImportProgress(Protocol):
    """Receives progress as it happens; called from two threads."""

    def records_sent(self, count: int) -> None: ...

    def batch_confirmed(self, record_count: int, counts: OutcomeCounts) -> None: ...


class CheckpointSink(Protocol):
    def __call__(self, checkpoint: ImportCheckpoint) -> None: ...


def derive_import_id(file_sha256: str, source_province: str) -> str:
    """A stable import id, so that running the same file again resumes the same import."""
    return f"province-{source_province}-sha256-{file_sha256[:40]}"


def build_import_record(record: SubjectRecord) -> registry_pb2.ImportRecord:
    """The proto for one file record; an unknown kind goes out as UNSPECIFIED so that the
    server rejects that record with a reason."""
    return registry_pb2.ImportRecord(
        source_record_id=record.source_record_id,
        registration=registry_pb2.SubjectRegistration(
            kind=record.kind_name,
            name=record.name,
            credit_code=record.credit_code,
            resident_id=record.resident_id,
            division_code=record.division_code,
            address=record.address,
            legal_representative=record.legal_representative,
            contact_phone=record.contact_phone,
        ),
    )


def without_personal_data(text: str, record: SubjectRecord) -> str:
    """`text` with the record's resident ID and phone number blotted out, should a server
    message ever quote them."""
    for value in record.personal_values:
        text = text.replace(value, _REDACTED)
    return text


def outcome_name(outcome: registry_pb2.ImportOutcome) -> str:
    return registry_pb2.ImportOutcome.Name(outcome).removeprefix(_OUTCOME_PREFIX)


def report_line_for(result: registry_pb2.ImportRecordResult, record: SubjectRecord) -> ReportLine:
    return ReportLine(
        source_record_id=result.source_record_id,
        outcome=outcome_name(result.outcome),
        subject_id=result.subject_id,
        field=without_personal_data(result.field, record),
        reason=without_personal_data(result.reason, record),
    )


def count_outcomes(results: Iterable[registry_pb2.ImportRecordResult]) -> OutcomeCounts:
    created = merged = conflict = rejected = 0
    for result in results:
        if result.outcome == registry_pb2.IMPORT_OUTCOME_CREATED:
            created += 1
        elif result.outcome == registry_pb2.IMPORT_OUTCOME_MERGED:
            merged += 1
        elif result.outcome == registry_pb2.IMPORT_OUTCOME_CONFLICT:
            conflict += 1
        elif result.outcome == registry_pb2.IMPORT_OUTCOME_REJECTED:
            rejected += 1
    return OutcomeCounts(created=created, merged=merged, conflict=conflict, rejected=rejected)


def batched(records: Iterator[SubjectRecord], size: int) -> Iterator[tuple[SubjectRecord, ...]]:
    while batch := tuple(islice(records, size)):
        yield batch


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What to send."""

    source_path: Path
    source_province: str
    import_id: str
    batch_size: int
    records_to_skip: int
    max_batches_in_flight: int = DEFAULT_BATCHES_IN_FLIGHT


class ImportSession:
    """One ImportSubjects call. Its attributes stay readable after run() raises, so that the
    caller can say how far the import got."""

    def __init__(
        self,
        plan: ImportPlan,
        checkpoint: ImportCheckpoint,
        report: ReportWriter,
        save_checkpoint: CheckpointSink,
        progress: ImportProgress,
    ) -> None:
        if not 1 <= plan.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be 1..{MAX_BATCH_SIZE}")
        self.plan = plan
        self.checkpoint = checkpoint
        self.records_sent = 0
        self.counts_this_run = OutcomeCounts()
        self.server_summary: registry_pb2.ImportSummary | None = None
        self.stream_finished = False
        self._report = report
        self._save_checkpoint = save_checkpoint
        self._progress = progress
        self._unanswered: deque[tuple[SubjectRecord, ...]] = deque()
        self._free_slots = threading.Semaphore(plan.max_batches_in_flight)
        self._stopping = threading.Event()
        self._request_error: BaseException | None = None

    @property
    def records_unconfirmed(self) -> int:
        return sum(len(batch) for batch in tuple(self._unanswered))

    def run(self, stub: registry_pb2_grpc.RegistryServiceStub, metadata: Metadata) -> None:
        """Sends every record after `records_to_skip` and records the answers. Raises
        grpc.RpcError, ImportProtocolError, or whatever reading the file raised."""
        responses = stub.ImportSubjects(self._requests(), metadata=metadata)
        try:
            for response in responses:
                self._take_response(response)
        except grpc.RpcError:
            if self._request_error is not None:
                raise self._request_error from None
            raise
        except BaseException:
            responses.cancel()
            raise
        finally:
            self._stopping.set()
        if self._unanswered:
            raise ImportProtocolError(
                f"the registry ended the stream leaving {self.records_unconfirmed} records "
                "unconfirmed"
            )

    def _requests(self) -> Iterator[registry_pb2.ImportSubjectsRequest]:
        try:
            all_records = iter_subject_records(self.plan.source_path)
            records = islice(all_records, self.plan.records_to_skip, None)
            is_first_message = True
            for batch in batched(records, self.plan.batch_size):
                if not self._wait_for_free_slot():
                    return
                request = registry_pb2.ImportSubjectsRequest(
                    records=[build_import_record(record) for record in batch]
                )
                if is_first_message:
                    request.import_id = self.plan.import_id
                    request.source_province = self.plan.source_province
                    is_first_message = False
                self._unanswered.append(batch)
                self.records_sent += len(batch)
                self._progress.records_sent(len(batch))
                yield request
        except Exception as error:
            # gRPC would log this and cancel the call; keep it to re-raise on the main thread.
            self._request_error = error
            raise

    def _wait_for_free_slot(self) -> bool:
        while not self._stopping.is_set():
            if self._free_slots.acquire(timeout=_WAIT_SLICE_SECONDS):
                return True
        return False

    def _take_response(self, response: registry_pb2.ImportSubjectsResponse) -> None:
        if response.HasField("summary"):
            self.server_summary = response.summary
        if response.results:
            self._confirm_batch(response.results)
        if response.done:
            self.stream_finished = True

    def _confirm_batch(self, results: Sequence[registry_pb2.ImportRecordResult]) -> None:
        if not self._unanswered:
            raise ImportProtocolError(
                f"the registry answered {len(results)} records that were never sent"
            )
        batch = self._unanswered[0]
        if len(results) != len(batch):
            raise ImportProtocolError(
                f"a batch of {len(batch)} records was answered with {len(results)} results"
            )
        for record, result in zip(batch, results, strict=True):
            if result.source_record_id.strip() != record.source_record_id.strip():
                raise ImportProtocolError(
                    f"expected the result for {record.source_record_id!r} (line "
                    f"{record.line_number}), got {result.source_record_id!r}"
                )
        counts = count_outcomes(results)
        report_bytes = self._report.append(
            report_line_for(result, record) for record, result in zip(batch, results, strict=True)
        )
        self.checkpoint = self.checkpoint.after_batch(len(batch), report_bytes, counts)
        self._save_checkpoint(self.checkpoint)
        self._unanswered.popleft()
        self._free_slots.release()
        self.counts_this_run = self.counts_this_run.plus(counts)
        self._progress.batch_confirmed(len(batch), counts)
