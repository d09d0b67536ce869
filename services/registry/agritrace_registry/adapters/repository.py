"""SQLAlchemy adapters of the registry's ports. Bulk writes use PostgreSQL COPY when the
database is PostgreSQL (an import writes hundreds of thousands of rows) and executemany
elsewhere."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from agritrace_kernel.db import SqlAlchemyUnitOfWork, as_utc, bulk_insert, chunks, matching
from agritrace_kernel.errors import ConcurrencyConflict
from agritrace_kernel.idempotency import SqlAlchemyRequestLog
from agritrace_registry.adapters import orm
from agritrace_registry.domain.model import (
    IdentityKey,
    Provenance,
    Subject,
    SubjectKind,
    SubjectStatus,
    name_key,
)
from agritrace_registry.service_layer.ports import (
    ConflictRecord,
    ImportRun,
    ProvenanceRecord,
    RecordedOutcome,
    SubjectQuery,
)


def _subject_row(subject: Subject) -> dict[str, Any]:
    return {
        "subject_id": subject.subject_id,
        "kind": subject.kind.value,
        "name": subject.name,
        "name_key": name_key(subject.name),
        "division_code": subject.division_code,
        "credit_code": subject.credit_code,
        "resident_id_digest": subject.resident_id_digest,
        "resident_id_sealed": subject.resident_id_sealed,
        "resident_id_masked": subject.resident_id_masked,
        "address": subject.address,
        "legal_representative": subject.legal_representative,
        "contact_phone_sealed": subject.contact_phone_sealed,
        "contact_phone_masked": subject.contact_phone_masked,
        "status": subject.status.value,
        "status_reason": subject.status_reason,
        "review_flags": ",".join(subject.review_flags),
        "version": subject.version,
        "created_at": subject.created_at,
        "updated_at": subject.updated_at,
    }


def _to_subject(row: Mapping[str, Any] | sa.RowMapping) -> Subject:
    return Subject(
        subject_id=row["subject_id"],
        kind=SubjectKind(row["kind"]),
        name=row["name"],
        division_code=row["division_code"],
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
        credit_code=row["credit_code"],
        resident_id_digest=row["resident_id_digest"],
        resident_id_sealed=row["resident_id_sealed"],
        resident_id_masked=row["resident_id_masked"],
        address=row["address"],
        legal_representative=row["legal_representative"],
        contact_phone_sealed=row["contact_phone_sealed"],
        contact_phone_masked=row["contact_phone_masked"],
        status=SubjectStatus(row["status"]),
        status_reason=row["status_reason"],
        review_flags=[flag for flag in row["review_flags"].split(",") if flag],
        version=row["version"],
    )


class SqlAlchemySubjectRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, subjects: Sequence[Subject]) -> None:
        bulk_insert(self.session, orm.subjects, [_subject_row(s) for s in subjects])

    def get(self, subject_id: str) -> Subject | None:
        row = self.session.execute(
            sa.select(orm.subjects).where(orm.subjects.c.subject_id == subject_id)
        ).mappings().first()
        if row is None:
            return None
        subject = _to_subject(row)
        self._enrich([subject])
        return subject

    def find_by_keys(self, keys: Iterable[IdentityKey]) -> dict[IdentityKey, Subject]:
        by_kind: dict[str, list[str]] = {"credit_code": [], "resident_id": []}
        for key in keys:
            by_kind[key.kind].append(key.value)
        found: dict[IdentityKey, Subject] = {}
        for kind, column in (("credit_code", orm.subjects.c.credit_code),
                             ("resident_id", orm.subjects.c.resident_id_digest)):
            for condition in matching(self.session, column, by_kind[kind]):
                for row in self.session.execute(
                    sa.select(orm.subjects).where(condition)
                ).mappings():
                    subject = _to_subject(row)
                    found[subject.identity_key] = subject
        return found

    def save(self, subject: Subject, expected_version: int) -> None:
        self.save_many([(subject, expected_version)])

    def save_many(self, changes: Sequence[tuple[Subject, int]]) -> None:
        """Writes changed subjects in one executemany, each only if still at the version it
        was read at; any stale one fails the whole unit of work."""
        if not changes:
            return
        table = orm.subjects
        rows = []
        for subject, expected_version in changes:
            row = _subject_row(subject)
            del row["created_at"]
            row["b_subject_id"] = row.pop("subject_id")
            row["b_expected_version"] = expected_version
            rows.append(row)
        statement = (
            table.update()
            .where(table.c.subject_id == sa.bindparam("b_subject_id"))
            .where(table.c.version == sa.bindparam("b_expected_version"))
            .values({key: sa.bindparam(key) for key in rows[0] if not key.startswith("b_")})
        )
        result = self.session.connection().execute(statement, rows)
        if result.rowcount != len(rows):
            raise ConcurrencyConflict(
                "a subject changed concurrently; read it again",
            )

    def find(self, query: SubjectQuery) -> list[Subject]:
        table = orm.subjects
        statement = sa.select(table).order_by(table.c.subject_id).limit(query.limit)
        if query.division_prefix:
            statement = statement.where(table.c.division_code.startswith(query.division_prefix))
        if query.kind is not None:
            statement = statement.where(table.c.kind == query.kind.value)
        if query.status is not None:
            statement = statement.where(table.c.status == query.status.value)
        if query.after_subject_id:
            statement = statement.where(table.c.subject_id > query.after_subject_id)
        subjects = [_to_subject(row) for row in self.session.execute(statement).mappings()]
        self._enrich(subjects)
        return subjects

    def _enrich(self, subjects: Sequence[Subject]) -> None:
        """Provenance and duplicate suspicions for a page of subjects, in two queries."""
        by_id = {s.subject_id: s for s in subjects}
        if not by_id:
            return
        for row in self.session.execute(
            sa.select(orm.provenance)
            .where(orm.provenance.c.subject_id.in_(by_id))
            .order_by(orm.provenance.c.first_seen, orm.provenance.c.source)
        ).mappings():
            by_id[row["subject_id"]].provenance.append(
                Provenance(row["source"], row["source_record_id"], as_utc(row["first_seen"]))
            )
        for row in self.session.execute(
            sa.select(orm.duplicate_suspicions)
            .where(orm.duplicate_suspicions.c.subject_id.in_(by_id))
            .order_by(orm.duplicate_suspicions.c.other_subject_id)
        ).mappings():
            by_id[row["subject_id"]].suspected_duplicate_ids.append(row["other_subject_id"])

    def add_provenance(self, records: Sequence[ProvenanceRecord]) -> None:
        bulk_insert(
            self.session,
            orm.provenance,
            [
                {
                    "source": r.source,
                    "source_record_id": r.source_record_id,
                    "subject_id": r.subject_id,
                    "outcome": r.outcome,
                    "import_id": r.import_id,
                    "first_seen": r.first_seen,
                }
                for r in records
            ],
        )

    def add_conflicts(self, records: Sequence[ConflictRecord]) -> None:
        bulk_insert(
            self.session,
            orm.conflicts,
            [
                {
                    "subject_id": r.subject_id,
                    "source": r.source,
                    "source_record_id": r.source_record_id,
                    "import_id": r.import_id,
                    "differing_fields": ",".join(r.differing_fields),
                    "incoming": json.dumps(r.incoming, ensure_ascii=False),
                    "existing": json.dumps(r.existing, ensure_ascii=False),
                    "recorded_at": r.recorded_at,
                }
                for r in records
            ],
        )

    def recorded_outcomes(
        self, source: str, source_record_ids: Sequence[str]
    ) -> dict[str, RecordedOutcome]:
        outcomes: dict[str, RecordedOutcome] = {}
        unique_ids = sorted(set(source_record_ids))
        provenance, conflicts = orm.provenance.c, orm.conflicts.c
        for condition in matching(self.session, provenance.source_record_id, unique_ids):
            for row in self.session.execute(
                sa.select(provenance.source_record_id, provenance.outcome, provenance.subject_id)
                .where(provenance.source == source)
                .where(condition)
            ):
                outcomes[row[0]] = RecordedOutcome(row[1], row[2])
        for condition in matching(self.session, conflicts.source_record_id, unique_ids):
            for row in self.session.execute(
                sa.select(conflicts.source_record_id, conflicts.subject_id,
                          conflicts.differing_fields)
                .where(conflicts.source == source)
                .where(condition)
            ):
                outcomes[row[0]] = RecordedOutcome("CONFLICT", row[1], tuple(row[2].split(",")))
        return outcomes

    def name_twins(self, subject_ids: Sequence[str]) -> list[tuple[str, str]]:
        a, b = orm.subjects.alias("a"), orm.subjects.alias("b")
        pairs: list[tuple[str, str]] = []
        for chunk in chunks(list(subject_ids)):
            rows = self.session.execute(
                sa.select(a.c.subject_id, b.c.subject_id)
                .join(b, sa.and_(a.c.name_key == b.c.name_key,
                                 a.c.division_code == b.c.division_code,
                                 a.c.subject_id != b.c.subject_id))
                .where(a.c.subject_id.in_(chunk))
            )
            pairs.extend((row[0], row[1]) for row in rows)
        return pairs

    def add_duplicate_suspicions(self, pairs: Sequence[tuple[str, str]]) -> None:
        both_ways = {(x, y) for x, y in pairs} | {(y, x) for x, y in pairs}
        existing = set()
        for chunk in chunks(sorted({x for x, _ in both_ways})):
            existing |= {
                (row[0], row[1])
                for row in self.session.execute(
                    sa.select(orm.duplicate_suspicions.c.subject_id,
                              orm.duplicate_suspicions.c.other_subject_id)
                    .where(orm.duplicate_suspicions.c.subject_id.in_(chunk))
                )
            }
        now = datetime.now(UTC)
        rows = [{"subject_id": x, "other_subject_id": y, "recorded_at": now}
                for x, y in sorted(both_ways - existing)]
        if rows:
            self.session.execute(orm.duplicate_suspicions.insert(), rows)


class SqlAlchemyImportRuns:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, import_id: str) -> ImportRun | None:
        row = self.session.execute(
            sa.select(orm.import_runs).where(orm.import_runs.c.import_id == import_id)
        ).mappings().first()
        if row is None:
            return None
        values = dict(row)
        for column in ("started_at", "finished_at"):
            if values[column] is not None:
                values[column] = as_utc(values[column])
        return ImportRun(**values)

    def save(self, run: ImportRun) -> None:
        values = {
            "source_province": run.source_province, "received": run.received,
            "created": run.created, "merged": run.merged, "conflicts": run.conflicts,
            "rejected": run.rejected, "started_at": run.started_at,
            "finished_at": run.finished_at,
        }
        updated = self.session.execute(
            orm.import_runs.update().where(orm.import_runs.c.import_id == run.import_id)
            .values(**values)
        )
        if updated.rowcount == 0:  # type: ignore[attr-defined]
            self.session.execute(orm.import_runs.insert().values(import_id=run.import_id,
                                                                 **values))


class RegistryUnitOfWork(SqlAlchemyUnitOfWork):
    subjects: SqlAlchemySubjectRepository
    requests: SqlAlchemyRequestLog
    imports: SqlAlchemyImportRuns

    def __init__(self, session_factory: sessionmaker[Session],
                 after_commit: Callable[[], None] | None = None) -> None:
        super().__init__(session_factory, after_commit)

    def _open(self, session: Session) -> None:
        self.subjects = SqlAlchemySubjectRepository(session)
        self.requests = SqlAlchemyRequestLog(session, orm.request_log)
        self.imports = SqlAlchemyImportRuns(session)
