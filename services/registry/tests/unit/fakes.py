"""Small hand-written fakes of the registry's ports, as in "Architecture Patterns with Python".

`FakeDatabase` is the "database": the committed state plus the events published by committed
units of work. `FakeUnitOfWork` works on a private copy of that state and replaces the
committed state only on `commit()`, so a use case that fails half-way leaves nothing behind,
and only committed events count as published.

The repositories behave like the SQLAlchemy adapters where it matters to the use cases:
objects handed out are copies (a change counts only once `save`d), `save` checks the version,
provenance and duplicate suspicions live apart from the subject row, and unique keys are
enforced (a violation surfaces as AlreadyExists(CONCURRENT_DUPLICATE), as the SQL unit of work
reports an IntegrityError).

This module is loaded by conftest.py (tests run with --import-mode=importlib, so the test
directory is not on sys.path); tests get these objects through its fixtures.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from agritrace_kernel.errors import AlreadyExists, ConcurrencyConflict
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import RequestRecord
from agritrace_registry.domain import identifiers
from agritrace_registry.domain.model import IdentityKey, Provenance, Subject, name_key
from agritrace_registry.service_layer.ports import (
    ConflictRecord,
    ImportRun,
    ProvenanceRecord,
    RecordedOutcome,
    SubjectQuery,
)
from agritrace_testing.fakes import FakeUnitOfWorkBase

# -- collaborators -----------------------------------------------------------------------------


class FakeProtector:
    """Deterministic PersonalDataProtector: a plain digest and a reversible "seal"."""

    DIGEST_PREFIX = "digest:"
    SEAL_PREFIX = "sealed:"

    def digest(self, value: str) -> str:
        return self.DIGEST_PREFIX + hashlib.sha256(value.encode()).hexdigest()

    def seal(self, value: str) -> str:
        return self.SEAL_PREFIX + value[::-1]

    def unseal(self, sealed: str) -> str:
        if not sealed.startswith(self.SEAL_PREFIX):
            raise ValueError("not sealed by FakeProtector")
        return sealed.removeprefix(self.SEAL_PREFIX)[::-1]


class SeededSubjectIds:
    """identifiers.new_subject_id with a seeded random source: the same ids on every run."""

    def __init__(self, seed: int = 20240501) -> None:
        self._random = random.Random(seed)
        self.issued: list[str] = []

    def __call__(self, province: str) -> str:
        subject_id = identifiers.new_subject_id(province, self._random.getrandbits)
        self.issued.append(subject_id)
        return subject_id


class FakeLease:
    def __init__(self, leases: FakeLeases, name: str) -> None:
        self._leases, self.name = leases, name

    def renew(self) -> bool:
        return self._leases.held.get(self.name) is self

    def release(self) -> None:
        if self._leases.held.get(self.name) is self:
            del self._leases.held[self.name]


class FakeLeases:
    """An in-memory LeaseManager whose leases expire only when a test says so."""

    def __init__(self) -> None:
        self.held: dict[str, FakeLease] = {}

    def try_acquire(self, name: str, ttl_seconds: float) -> FakeLease | None:
        if name in self.held:
            return None
        lease = FakeLease(self, name)
        self.held[name] = lease
        return lease

    def expire(self, name: str) -> None:
        self.held.pop(name, None)


# -- the "database" ----------------------------------------------------------------------------


@dataclass
class Tables:
    """Everything the registry stores. Subjects are stored as rows: without provenance and
    duplicate suspicions, which live in their own tables."""

    subjects: dict[str, Subject] = field(default_factory=dict)
    provenance: list[ProvenanceRecord] = field(default_factory=list)
    conflicts: list[ConflictRecord] = field(default_factory=list)
    suspicions: set[tuple[str, str]] = field(default_factory=set)
    requests: dict[str, RequestRecord] = field(default_factory=dict)
    imports: dict[str, ImportRun] = field(default_factory=dict)


@dataclass
class FakeDatabase:
    committed: Tables = field(default_factory=Tables)
    published: list[Event] = field(default_factory=list)
    commits: int = 0

    # Read helpers for assertions (committed state only).

    def subject(self, subject_id: str) -> Subject:
        return _enriched(self.committed, self.committed.subjects[subject_id])

    def subject_ids(self) -> list[str]:
        return sorted(self.committed.subjects)

    def events_named(self, name: str) -> list[Event]:
        return [event for event in self.published if event.name == name]

    def provenance_of(self, subject_id: str) -> list[ProvenanceRecord]:
        return [p for p in self.committed.provenance if p.subject_id == subject_id]

    def conflicts_of(self, subject_id: str) -> list[ConflictRecord]:
        return [c for c in self.committed.conflicts if c.subject_id == subject_id]

    def snapshot(self) -> Tables:
        return copy.deepcopy(self.committed)


def _duplicate(what: str) -> AlreadyExists:
    # What SqlAlchemyUnitOfWork raises for an IntegrityError.
    return AlreadyExists(f"duplicate {what}", reason="CONCURRENT_DUPLICATE")


def _row(subject: Subject) -> Subject:
    return replace(copy.deepcopy(subject), provenance=[], suspected_duplicate_ids=[])


def _enriched(tables: Tables, row: Subject) -> Subject:
    subject = copy.deepcopy(row)
    records = sorted(
        (p for p in tables.provenance if p.subject_id == row.subject_id),
        key=lambda p: (p.first_seen, p.source),
    )
    subject.provenance = [Provenance(p.source, p.source_record_id, p.first_seen) for p in records]
    subject.suspected_duplicate_ids = sorted(
        other for this, other in tables.suspicions if this == row.subject_id
    )
    return subject


class FakeSubjectRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def add_many(self, subjects: Sequence[Subject]) -> None:
        for subject in subjects:
            if subject.subject_id in self._tables.subjects:
                raise _duplicate(f"subject_id {subject.subject_id}")
            if self._holder_of(subject.identity_key) is not None:
                raise _duplicate(subject.identity_key.kind)
            self._tables.subjects[subject.subject_id] = _row(subject)

    def get(self, subject_id: str) -> Subject | None:
        row = self._tables.subjects.get(subject_id)
        return None if row is None else _enriched(self._tables, row)

    def find_by_keys(self, keys: Iterable[IdentityKey]) -> dict[IdentityKey, Subject]:
        found: dict[IdentityKey, Subject] = {}
        for key in keys:
            row = self._holder_of(key)
            if row is not None:
                found[key] = copy.deepcopy(row)
        return found

    def save(self, subject: Subject, expected_version: int) -> None:
        stored = self._tables.subjects.get(subject.subject_id)
        if stored is None or stored.version != expected_version:
            raise ConcurrencyConflict(
                f"subject {subject.subject_id} changed concurrently; read it again"
            )
        self._tables.subjects[subject.subject_id] = _row(subject)

    def save_many(self, changes: Sequence[tuple[Subject, int]]) -> None:
        for subject, expected_version in changes:
            self.save(subject, expected_version)

    def find(self, query: SubjectQuery) -> list[Subject]:
        rows = [
            row
            for subject_id, row in sorted(self._tables.subjects.items())
            if row.division_code.startswith(query.division_prefix)
            and (query.kind is None or row.kind is query.kind)
            and (query.status is None or row.status is query.status)
            and subject_id > query.after_subject_id
        ]
        return [_enriched(self._tables, row) for row in rows[: query.limit]]

    def add_provenance(self, records: Sequence[ProvenanceRecord]) -> None:
        for record in records:
            key = (record.source, record.source_record_id, record.subject_id)
            if any((p.source, p.source_record_id, p.subject_id) == key
                   for p in self._tables.provenance):
                raise _duplicate(f"provenance {key}")
            self._tables.provenance.append(record)

    def add_conflicts(self, records: Sequence[ConflictRecord]) -> None:
        for record in records:
            key = (record.source, record.source_record_id)
            if any((c.source, c.source_record_id) == key for c in self._tables.conflicts):
                raise _duplicate(f"conflict {key}")
            self._tables.conflicts.append(record)

    def recorded_outcomes(
        self, source: str, source_record_ids: Sequence[str]
    ) -> dict[str, RecordedOutcome]:
        wanted = set(source_record_ids)
        outcomes: dict[str, RecordedOutcome] = {}
        for p in self._tables.provenance:
            if p.source == source and p.source_record_id in wanted:
                outcomes[p.source_record_id] = RecordedOutcome(p.outcome, p.subject_id)
        for c in self._tables.conflicts:
            if c.source == source and c.source_record_id in wanted:
                outcomes[c.source_record_id] = RecordedOutcome(
                    "CONFLICT", c.subject_id, c.differing_fields
                )
        return outcomes

    def name_twins(self, subject_ids: Sequence[str]) -> list[tuple[str, str]]:
        pairs = []
        for subject_id in subject_ids:
            this = self._tables.subjects.get(subject_id)
            if this is None:
                continue
            for other in self._tables.subjects.values():
                if (
                    other.subject_id != this.subject_id
                    and name_key(other.name) == name_key(this.name)
                    and other.division_code == this.division_code
                ):
                    pairs.append((this.subject_id, other.subject_id))
        return pairs

    def add_duplicate_suspicions(self, pairs: Sequence[tuple[str, str]]) -> None:
        for this, other in pairs:
            self._tables.suspicions |= {(this, other), (other, this)}

    def _holder_of(self, key: IdentityKey) -> Subject | None:
        for row in self._tables.subjects.values():
            if row.identity_key == key:
                return row
        return None


class FakeRequestLog:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def find(self, request_id: str) -> RequestRecord | None:
        return self._tables.requests.get(request_id)

    def record(self, request_id: str, record: RequestRecord) -> None:
        if request_id in self._tables.requests:
            raise _duplicate(f"request_id {request_id}")
        self._tables.requests[request_id] = record


class FakeImportRuns:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def get(self, import_id: str) -> ImportRun | None:
        run = self._tables.imports.get(import_id)
        return None if run is None else copy.deepcopy(run)

    def save(self, run: ImportRun) -> None:
        self._tables.imports[run.import_id] = copy.deepcopy(run)


class FakeUnitOfWork(FakeUnitOfWorkBase[Tables]):
    """The service's repositories over agritrace_testing's copy-on-begin unit of work."""

    subjects: FakeSubjectRepository
    requests: FakeRequestLog
    imports: FakeImportRuns

    def _open(self, working: Tables) -> None:
        self.subjects = FakeSubjectRepository(working)
        self.requests = FakeRequestLog(working)
        self.imports = FakeImportRuns(working)
