"""What the bridge needs from the national services, as ports: adapters call them over gRPC
as the province's platform client, the unit tests use fakes.

Like the provincial adapters, national adapters do not retry: they raise NationalUnavailable
when a retry may help (the service is down, overloaded or the call timed out) and
NationalRefused when it will not (permission denied, invalid argument)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agritrace_bridge.contract import Subject, TraceRecord
from agritrace_bridge.domain.imports import RecordOutcome
from agritrace_bridge.domain.inbound import CaptureOutcome


class NationalError(Exception):
    retryable = False

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class NationalUnavailable(NationalError):
    retryable = True


class NationalRefused(NationalError):
    pass


class SubjectImporter(Protocol):
    """The registry's ImportSubjects."""

    def import_page(self, import_id: str, province: str,
                    subjects: Sequence[Subject]) -> list[RecordOutcome]:
        """Imports one page; the outcome of every subject, in order. Idempotent by
        (province, source_record_id): a page sent again is answered with the first
        outcomes."""
        ...


class TraceCapture(Protocol):
    """flow's CaptureRecords for internal-trace records."""

    def capture(self, province: str, records: Sequence[TraceRecord]) -> list[CaptureOutcome]:
        """Hands the records over; flow's answer for each, in order. Idempotent by
        (province, record id)."""
        ...
