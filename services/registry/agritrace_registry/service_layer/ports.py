"""What the use cases need from the outside world: repositories and the unit of work. The
SQLAlchemy adapters implement these; unit tests use small in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Self

from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import RequestLog
from agritrace_registry.domain.model import IdentityKey, Subject, SubjectKind, SubjectStatus


@dataclass(frozen=True)
class SubjectQuery:
    division_prefix: str = ""
    kind: SubjectKind | None = None
    status: SubjectStatus | None = None
    after_subject_id: str = ""
    limit: int = 50


@dataclass(frozen=True)
class ProvenanceRecord:
    subject_id: str
    source: str
    source_record_id: str
    outcome: str  # "CREATED" or "MERGED": how the record first ended, replayed on re-import
    import_id: str | None
    first_seen: datetime


@dataclass(frozen=True)
class ConflictRecord:
    subject_id: str
    source: str
    source_record_id: str
    import_id: str | None
    differing_fields: tuple[str, ...]
    incoming: dict[str, str]  # the record's non-personal fields, as received
    existing: dict[str, str]  # the subject's fields at the time
    recorded_at: datetime


@dataclass(frozen=True)
class RecordedOutcome:
    """What a source record already led to, so a replay reports the same result."""

    outcome: str
    subject_id: str
    differing_fields: tuple[str, ...] = ()


@dataclass
class ImportRun:
    import_id: str
    source_province: str
    received: int = 0
    created: int = 0
    merged: int = 0
    conflicts: int = 0
    rejected: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None


class SubjectRepository(Protocol):
    def add_many(self, subjects: Sequence[Subject]) -> None: ...
    def get(self, subject_id: str) -> Subject | None: ...
    def find_by_keys(self, keys: Iterable[IdentityKey]) -> dict[IdentityKey, Subject]: ...
    def save(self, subject: Subject, expected_version: int) -> None: ...
    def save_many(self, changes: Sequence[tuple[Subject, int]]) -> None: ...
    def find(self, query: SubjectQuery) -> list[Subject]: ...
    def add_provenance(self, records: Sequence[ProvenanceRecord]) -> None: ...
    def add_conflicts(self, records: Sequence[ConflictRecord]) -> None: ...
    def recorded_outcomes(
        self, source: str, source_record_ids: Sequence[str]
    ) -> dict[str, RecordedOutcome]: ...
    def name_twins(self, subject_ids: Sequence[str]) -> list[tuple[str, str]]: ...
    def add_duplicate_suspicions(self, pairs: Sequence[tuple[str, str]]) -> None: ...


class ImportRuns(Protocol):
    def get(self, import_id: str) -> ImportRun | None: ...
    def save(self, run: ImportRun) -> None: ...


class UnitOfWork(Protocol):
    # Read-only members, so that implementations may hold narrower types.
    @property
    def subjects(self) -> SubjectRepository: ...
    @property
    def requests(self) -> RequestLog: ...
    @property
    def imports(self) -> ImportRuns: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None: ...
    def publish(self, event: Event) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
