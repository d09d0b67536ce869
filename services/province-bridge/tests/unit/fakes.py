"""In-memory fakes of the bridge's ports: its database (the unit of work), a provincial
platform and the registry's import, each able to fail on demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agritrace_bridge.contract import (
    Health,
    NationalRecord,
    PushResult,
    Subject,
    SubjectPage,
    TokenVerification,
    TraceRecordPage,
)
from agritrace_bridge.domain.imports import ImportRun, Outcome, RecordOutcome
from agritrace_bridge.service_layer.ports import NotSupported
from agritrace_testing.fakes import FakeUnitOfWorkBase


@dataclass
class Tables:
    runs: dict[str, ImportRun] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], RecordOutcome] = field(default_factory=dict)


class FakeDatabase:
    def __init__(self) -> None:
        self.committed = Tables()
        self.published: list = []  # type: ignore[type-arg]
        self.commits = 0
        # Commits still to fail (as a killed process or a lost connection would).
        self.fail_commits = 0


class FakeImports:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    def get(self, import_id: str) -> ImportRun | None:
        return self.t.runs.get(import_id)

    def by_request(self, request_id: str) -> ImportRun | None:
        return next((r for r in self.t.runs.values() if r.request_id == request_id), None)

    def latest(self) -> ImportRun | None:
        runs = sorted(self.t.runs.values(), key=lambda r: (r.started_at, r.import_id))
        return runs[-1] if runs else None

    def add(self, run: ImportRun) -> None:
        assert run.import_id not in self.t.runs
        self.t.runs[run.import_id] = run

    def save(self, run: ImportRun) -> None:
        self.t.runs[run.import_id] = run

    def known(self, import_id: str, source_record_ids: Sequence[str]) -> set[str]:
        return {i for i in source_record_ids if (import_id, i) in self.t.outcomes}

    def add_outcomes(self, import_id: str, outcomes: Sequence[RecordOutcome]) -> None:
        for outcome in outcomes:
            key = (import_id, outcome.source_record_id)
            assert key not in self.t.outcomes, "an outcome stored twice"
            self.t.outcomes[key] = outcome

    def outcomes(self, import_id: str, after: str, limit: int,
                 only: Outcome | None = None) -> list[RecordOutcome]:
        rows = sorted((o for (run, i), o in self.t.outcomes.items()
                       if run == import_id and i > after
                       and (only is None or o.outcome is only)),
                      key=lambda o: o.source_record_id)
        return rows[:limit]


class FakeUnitOfWork(FakeUnitOfWorkBase[Tables]):
    imports: FakeImports

    def _open(self, working: Tables) -> None:
        self.imports = FakeImports(working)

    def commit(self) -> None:
        database: FakeDatabase = self.database  # type: ignore[assignment]
        if database.fail_commits:
            database.fail_commits -= 1
            raise ConnectionError("the database went away")
        super().commit()


def subject(number: int, province: str = "37", **changes: str) -> Subject:
    values = {"source_record_id": f"{province}-{number:08d}", "kind": "ENTERPRISE",
              "name": f"企业{number}", "credit_code": f"CC{number:016d}",
              "division_code": f"{province}0102", **changes}
    return Subject.model_validate(values)


class FakePlatform:
    """A province holding `subjects`, paged by position; `failures` are raised, one per call,
    before any answer."""

    def __init__(self, subjects: Sequence[Subject], province: str = "37") -> None:
        self.subjects = list(subjects)
        self._province = province
        self.failures: list[Exception] = []
        self.calls = 0

    @property
    def province(self) -> str:
        return self._province

    def health(self) -> Health:
        return Health(status="ok", province=self._province)

    def list_subjects(self, page_token: str = "", page_size: int = 0) -> SubjectPage:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        start = int(page_token or 0)
        end = start + (page_size or 500)
        return SubjectPage(subjects=self.subjects[start:end],
                           next_page_token=str(end) if end < len(self.subjects) else "",
                           total_size=len(self.subjects))

    def list_trace_records(self, cursor: str = "", limit: int = 0) -> TraceRecordPage:
        return TraceRecordPage(records=[], next_cursor=cursor)

    def push_national_record(self, record: NationalRecord) -> PushResult:
        return PushResult(record_id=record.record_id, accepted_time=datetime.now(UTC))

    def verify_token(self, token: str) -> TokenVerification:
        raise NotSupported("a fake verifies no tokens", reason="NOT_SUPPORTED")

    def close(self) -> None:
        pass


class FakeRegistry:
    """The registry's import: idempotent by (province, source_record_id), like the real one;
    a subject whose name starts with "bad" is rejected, one whose credit code is known is
    merged. `failures` are raised, one per call, before anything is imported."""

    def __init__(self) -> None:
        self.imported: dict[tuple[str, str], RecordOutcome] = {}
        self.credit_codes: dict[str, str] = {}
        self.failures: list[Exception] = []
        self.pages: list[tuple[str, list[str]]] = []
        self.reason_quotes_personal_data = False

    def import_page(self, import_id: str, province: str,
                    subjects: Sequence[Subject]) -> list[RecordOutcome]:
        if self.failures:
            raise self.failures.pop(0)
        self.pages.append((import_id, [s.source_record_id for s in subjects]))
        results = []
        for s in subjects:
            key = (province, s.source_record_id)
            if key not in self.imported:
                self.imported[key] = self._outcome(s)
            results.append(self.imported[key])
        return results

    def _outcome(self, s: Subject) -> RecordOutcome:
        if s.name.startswith("bad"):
            reason = "is not a valid number"
            if self.reason_quotes_personal_data:
                reason = f"{s.resident_id} is not a valid number"
            return RecordOutcome(s.source_record_id, Outcome.REJECTED, "", "resident_id",
                                 reason)
        if s.credit_code in self.credit_codes:
            return RecordOutcome(s.source_record_id, Outcome.MERGED,
                                 self.credit_codes[s.credit_code])
        subject_id = f"S{len(self.credit_codes):015d}"
        self.credit_codes[s.credit_code] = subject_id
        return RecordOutcome(s.source_record_id, Outcome.CREATED, subject_id)


class RecordingObserver:
    """A SyncObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.records: dict[str, int] = {}
        self.retries: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str]] = []
        self.successes: list[str] = []

    def moved(self, direction: str, count: int) -> None:
        self.records[direction] = self.records.get(direction, 0) + count

    def retried(self, direction: str, reason: str) -> None:
        self.retries.append((direction, reason))

    def failed(self, direction: str, reason: str) -> None:
        self.failures.append((direction, reason))

    def succeeded(self, direction: str) -> None:
        self.successes.append(direction)
