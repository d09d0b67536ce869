"""Bulk import of a province's historical registrations, batch by batch.

Every record ends as exactly one of CREATED, MERGED, CONFLICT or REJECTED. The identity key
(credit code, or the keyed digest of the ID number) decides whether a record is a subject we
already know, whichever source it came from, so a subject is never registered twice. Each
batch is one transaction; a source record already seen (same source and record id) reports
the outcome it had the first time and changes nothing, so an interrupted import is resumed by
simply sending it again. A batch that created or changed subjects announces them
(`import_batch_applied`) in its own transaction; the run ends with one `subjects_imported`
summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from agritrace_kernel.errors import AlreadyExists, ConcurrencyConflict, InvalidArgument
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import check_request_id
from agritrace_kernel.locks import Lease, LeaseManager, LocalLeases
from agritrace_registry.domain.model import (
    FLAG_IMPORT_CONFLICT,
    IdentityKey,
    ProtectedPersonalData,
    RegistrationInput,
    Subject,
    ValidRegistration,
    contradictions,
    province_source,
    validate_registration,
)
from agritrace_registry.service_layer import access
from agritrace_registry.service_layer.access import Actor
from agritrace_registry.service_layer.ports import (
    ConflictRecord,
    ImportRun,
    ProvenanceRecord,
    RecordedOutcome,
)
from agritrace_registry.service_layer.services import SERVICE, RegistryService, subject_payload

CREATED, MERGED, CONFLICT, REJECTED = "CREATED", "MERGED", "CONFLICT", "REJECTED"
MAX_BATCH = 5000
MAX_SOURCE_RECORD_ID = 64


@dataclass(frozen=True)
class ImportRecordInput:
    source_record_id: str
    data: RegistrationInput


@dataclass(frozen=True)
class RecordResult:
    source_record_id: str
    outcome: str
    subject_id: str = ""
    field: str = ""
    reason: str = ""
    replayed: bool = False


@dataclass
class ImportSummary:
    received: int = 0
    created: int = 0
    merged: int = 0
    conflicts: int = 0
    rejected: int = 0
    # Records that had an effect now (not replays of an earlier run).
    new_effects: int = 0

    def count(self, result: RecordResult, replay: bool) -> None:
        self.received += 1
        attribute = {CREATED: "created", MERGED: "merged", CONFLICT: "conflicts",
                     REJECTED: "rejected"}[result.outcome]
        setattr(self, attribute, getattr(self, attribute) + 1)
        if not replay and result.outcome != REJECTED:
            self.new_effects += 1


@dataclass(frozen=True)
class PreparedRecord:
    """One record after validation: its registration with identity key, protected personal
    data and the id it gets if it is new - or its rejection."""

    record_id: str
    outcome: ValidRegistration | RecordResult
    key: IdentityKey | None = None
    personal: ProtectedPersonalData | None = None
    candidate_subject_id: str = ""


@dataclass(frozen=True)
class PreparedBatch:
    items: list[PreparedRecord]


@dataclass
class _Batch:
    """Working state of one batch: what it creates and records, and keys seen so far."""

    source: str
    import_id: str
    subjects: list[Subject] = field(default_factory=list)
    provenance: list[ProvenanceRecord] = field(default_factory=list)
    conflicts: list[ConflictRecord] = field(default_factory=list)
    flagged: dict[str, tuple[Subject, int]] = field(default_factory=dict)
    created_ids: set[str] = field(default_factory=set)


def _rejection(record_id: str, error: InvalidArgument) -> RecordResult:
    first = error.violations[0]
    return RecordResult(
        record_id,
        REJECTED,
        field=first.field.removeprefix("registration."),
        reason="; ".join(
            f"{v.field.removeprefix('registration.')}: {v.description}" for v in error.violations
        ),
    )


IMPORT_LEASE_SECONDS = 120.0
CONCURRENT_DUPLICATE_ATTEMPTS = 3


class SubjectImporter:
    """One import run streams through one server at a time: a lease per import id (in Redis
    across replicas) refuses a second concurrent stream of the same run."""

    def __init__(self, service: RegistryService, leases: LeaseManager | None = None) -> None:
        self._service = service
        self._leases = leases if leases is not None else LocalLeases()
        self._held: dict[str, Lease] = {}

    def begin(self, import_id: str, source_province: str, *, actor: Actor = None) -> ImportRun:
        """Opens (or resumes) an import run."""
        import_id = check_request_id(import_id.strip()) if import_id.strip() else ""
        if not import_id:
            raise InvalidArgument.of("import_id", "is required so that the import can resume")
        province = source_province.strip()
        if len(province) != 2 or not province.isdigit() or \
                not self._service.catalog.is_valid_prefix(province):
            raise InvalidArgument.of("source_province", "must be a two-digit province code")
        access.check_import(actor, province)
        lease = self._leases.try_acquire(f"import:{import_id}", IMPORT_LEASE_SECONDS)
        if lease is None:
            raise ConcurrencyConflict(
                f"import {import_id} is already streaming; retry when that stream ends",
                reason="IMPORT_ALREADY_RUNNING",
            )
        try:
            with self._service.uow_factory() as uow:
                run = uow.imports.get(import_id)
                if run is None:
                    run = ImportRun(import_id, province, started_at=self._service.clock())
                    uow.imports.save(run)
                    uow.commit()
                elif run.source_province != province:
                    raise InvalidArgument.of(
                        "source_province",
                        f"import {import_id} belongs to province {run.source_province}",
                    )
        except BaseException:
            lease.release()
            raise
        self._held[import_id] = lease
        return run

    def import_batch(
        self, run: ImportRun, records: Sequence[ImportRecordInput], summary: ImportSummary
    ) -> list[RecordResult]:
        """Imports one batch in one transaction and returns each record's outcome, in order."""
        return self.apply(run, self.prepare(records), summary)

    def prepare(self, records: Sequence[ImportRecordInput]) -> PreparedBatch:
        """Validates a batch and computes its identity keys: pure work, no I/O, so a caller may
        prepare the next batch while the previous one is being applied."""
        if len(records) > MAX_BATCH:
            raise InvalidArgument.of("records", f"at most {MAX_BATCH} records per message")
        service = self._service
        items: list[PreparedRecord] = []
        for record in records:
            record_id = record.source_record_id.strip()
            if not record_id or len(record_id) > MAX_SOURCE_RECORD_ID:
                items.append(PreparedRecord(record_id, RecordResult(
                    record_id, REJECTED, field="source_record_id",
                    reason=f"is required, at most {MAX_SOURCE_RECORD_ID} characters")))
                continue
            try:
                registration = validate_registration(record.data, service.catalog)
            except InvalidArgument as error:
                items.append(PreparedRecord(record_id, _rejection(record_id, error)))
                continue
            # Protecting personal data and drawing an id cost CPU; done here, they overlap
            # with the previous batch's database work (wasted only for the few duplicates).
            personal = ProtectedPersonalData.of(registration, service.protector)
            items.append(PreparedRecord(
                record_id, registration, personal.identity_key(registration), personal,
                service.new_subject_id(registration.division_code[:2]),
            ))
        return PreparedBatch(items)

    def apply(
        self, run: ImportRun, prepared: PreparedBatch, summary: ImportSummary
    ) -> list[RecordResult]:
        """Classifies and writes a prepared batch in one transaction, in order after the
        batches applied before it (their subjects are visible to it).

        Another import (another province, another replica) may create a subject with one of
        the batch's keys between its look-ups and its commit; the database refuses the second
        key, and the batch is applied again, now finding that subject (merged, not created)."""
        for attempt in range(1, CONCURRENT_DUPLICATE_ATTEMPTS + 1):
            try:
                return self._apply_once(run, prepared, summary)
            except AlreadyExists as error:
                if error.reason != "CONCURRENT_DUPLICATE" or \
                        attempt == CONCURRENT_DUPLICATE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _apply_once(
        self, run: ImportRun, prepared: PreparedBatch, summary: ImportSummary
    ) -> list[RecordResult]:
        lease = self._held.get(run.import_id)
        if lease is not None and not lease.renew():
            raise ConcurrencyConflict(
                f"import {run.import_id} lost its lease (stalled too long); resend the rest",
                reason="IMPORT_LEASE_LOST",
            )
        service = self._service
        batch = _Batch(province_source(run.source_province), run.import_id)
        now = service.clock()
        source = batch.source
        results: list[RecordResult] = []
        with service.uow_factory() as uow:
            # Load what the batch may touch, in three queries.
            known = uow.subjects.find_by_keys(
                {item.key for item in prepared.items if item.key is not None})
            replays = uow.subjects.recorded_outcomes(
                source, [item.record_id for item in prepared.items if item.record_id])

            # 3. Classify in order; a key first seen earlier in this batch counts as known.
            handled: dict[str, RecordResult] = {}
            replays_flags: list[bool] = []
            for item in prepared.items:
                record_id = item.record_id
                if isinstance(item.outcome, RecordResult):
                    result, replay = item.outcome, False
                elif record_id in handled:
                    result, replay = handled[record_id], True
                elif record_id in replays:
                    result, replay = self._replayed(record_id, replays[record_id]), True
                else:
                    result = self._classify(batch, item, known, now)
                    replay = False
                handled.setdefault(record_id, result)
                results.append(result)
                replays_flags.append(replay)

            # 4. Write everything of the batch at once.
            uow.subjects.add_many(batch.subjects)
            uow.subjects.add_provenance(batch.provenance)
            uow.subjects.add_conflicts(batch.conflicts)
            uow.subjects.save_many(list(batch.flagged.values()))
            # Consumers (the query read model) learn the batch's subjects from this event;
            # the run's `subjects_imported` only counts. A pure replay changed nothing.
            changed = batch.subjects + [subject for subject, _ in batch.flagged.values()]
            if changed:
                uow.publish(Event(SERVICE, "import_batch_applied", {
                    "import_id": run.import_id,
                    "source_province": run.source_province,
                    "subjects": [subject_payload(subject) for subject in changed],
                }))
            uow.commit()
        # Counted only once committed: a batch that rolled back did nothing.
        for result, replay in zip(results, replays_flags, strict=True):
            summary.count(result, replay)
        return [
            replace(result, replayed=True) if replay and result.outcome != REJECTED else result
            for result, replay in zip(results, replays_flags, strict=True)
        ]

    def finish(self, run: ImportRun, summary: ImportSummary) -> None:
        """Closes this call of the run; announces it when it changed anything (one event for
        the whole import, not one per record)."""
        lease = self._held.pop(run.import_id, None)
        try:
            self._record_finish(run, summary)
        finally:
            if lease is not None:
                lease.release()

    def _record_finish(self, run: ImportRun, summary: ImportSummary) -> None:
        with self._service.uow_factory() as uow:
            stored = uow.imports.get(run.import_id) or run
            stored.received, stored.created, stored.merged = (
                summary.received, summary.created, summary.merged)
            stored.conflicts, stored.rejected = summary.conflicts, summary.rejected
            stored.finished_at = self._service.clock()
            uow.imports.save(stored)
            if summary.new_effects:
                uow.publish(Event(SERVICE, "subjects_imported", {
                    "import_id": run.import_id,
                    "source_province": run.source_province,
                    "received": summary.received,
                    "created": summary.created,
                    "merged": summary.merged,
                    "conflicts": summary.conflicts,
                    "rejected": summary.rejected,
                }))
            uow.commit()

    @staticmethod
    def _replayed(record_id: str, recorded: RecordedOutcome) -> RecordResult:
        if recorded.outcome == CONFLICT:
            return RecordResult(record_id, CONFLICT, recorded.subject_id,
                                field=",".join(recorded.differing_fields),
                                reason="contradicts the registered subject; kept for review")
        return RecordResult(record_id, recorded.outcome, recorded.subject_id)

    def _classify(
        self,
        batch: _Batch,
        item: PreparedRecord,
        known: dict[IdentityKey, Subject],
        now: datetime,
    ) -> RecordResult:
        record_id, registration, key = item.record_id, item.outcome, item.key
        assert isinstance(registration, ValidRegistration) and key is not None
        existing = known.get(key)
        if existing is None:
            subject = Subject.register(
                item.candidate_subject_id, registration, self._service.protector, now,
                personal=item.personal,
            )
            known[key] = subject
            batch.subjects.append(subject)
            batch.created_ids.add(subject.subject_id)
            batch.provenance.append(ProvenanceRecord(
                subject.subject_id, batch.source, record_id, CREATED, batch.import_id,
                now))
            return RecordResult(record_id, CREATED, subject.subject_id)
        differing = contradictions(existing, registration)
        if not differing:
            batch.provenance.append(ProvenanceRecord(
                existing.subject_id, batch.source, record_id, MERGED, batch.import_id,
                now))
            return RecordResult(record_id, MERGED, existing.subject_id)
        batch.conflicts.append(ConflictRecord(
            subject_id=existing.subject_id,
            source=batch.source,
            source_record_id=record_id,
            import_id=batch.import_id,
            differing_fields=tuple(differing),
            incoming={f: str(getattr(registration, f)) for f in ("kind", "name",
                      "division_code", "address", "legal_representative")},
            existing={f: str(getattr(existing, f)) for f in ("kind", "name",
                      "division_code", "address", "legal_representative")},
            recorded_at=now,
        ))
        if existing.subject_id in batch.created_ids:
            existing.flag(FLAG_IMPORT_CONFLICT)  # not stored yet: goes in with its flag
        elif existing.subject_id not in batch.flagged:
            version_read = existing.version
            if existing.flag(FLAG_IMPORT_CONFLICT, now):
                batch.flagged[existing.subject_id] = (existing, version_read)
        return RecordResult(record_id, CONFLICT, existing.subject_id, field=",".join(differing),
                            reason="contradicts the registered subject; kept for review")
