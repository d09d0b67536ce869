"""In-memory fakes of the bridge's ports: its database (the unit of work), a provincial
platform and the registry's import, each able to fail on demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from agritrace_bridge.contract import (
    Health,
    NationalRecord,
    PushResult,
    Subject,
    SubjectPage,
    TokenVerification,
    TraceRecord,
    TraceRecordPage,
)
from agritrace_bridge.domain.imports import ImportRun, Outcome, RecordOutcome
from agritrace_bridge.domain.inbound import CaptureOutcome, InboxRecord, content_of
from agritrace_bridge.domain.outbound import QueuedRecord
from agritrace_bridge.domain.status import DirectionStatus, SecurityEvent
from agritrace_bridge.service_layer.national import NationalRefused
from agritrace_bridge.service_layer.onboarding import PlatformEntry
from agritrace_bridge.service_layer.ports import NotSupported, PlatformRejected
from agritrace_testing.fakes import FakeUnitOfWorkBase


@dataclass
class Tables:
    runs: dict[str, ImportRun] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], RecordOutcome] = field(default_factory=dict)
    security: dict[str, SecurityEvent] = field(default_factory=dict)
    # record id -> (record, state, next attempt)
    queue: dict[str, tuple[QueuedRecord, str, datetime]] = field(default_factory=dict)
    dead: dict[str, QueuedRecord] = field(default_factory=dict)
    stats: dict[str, DirectionStatus] = field(default_factory=dict)
    inbox: set[tuple[str, str]] = field(default_factory=set)
    cursors: dict[str, str] = field(default_factory=dict)
    # seq -> (record, content hash, state, attempts)
    traces: dict[int, tuple[TraceRecord, str, str, int]] = field(default_factory=dict)


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


class FakeSync:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    def status(self, direction: str, now: datetime) -> DirectionStatus:
        stored = self.t.stats.get(direction, DirectionStatus())
        if direction != "outbound":
            return stored
        waiting = [r for r, state, _ in self.t.queue.values() if state == "PENDING"]
        oldest = min((r.enqueued_at for r in waiting), default=None)
        return replace(stored, queue_depth=len(waiting), dead_letters=len(self.t.dead),
                       lag_seconds=(now - oldest).total_seconds() if oldest else 0.0)

    def note_delivered(self, direction: str, count: int, now: datetime) -> None:
        stored = self.t.stats.get(direction, DirectionStatus())
        self.t.stats[direction] = replace(stored, delivered=stored.delivered + count,
                                          last_success_at=now, last_error="")

    def note_error(self, direction: str, error: str) -> None:
        stored = self.t.stats.get(direction, DirectionStatus())
        self.t.stats[direction] = replace(stored, errors=stored.errors + 1, last_error=error)


class FakeSecurity:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    def by_request(self, request_id: str) -> SecurityEvent | None:
        return self.t.security.get(request_id)

    def add(self, event: SecurityEvent) -> None:
        self.t.security[event.request_id] = event


class FakeOutbound:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    def enqueue(self, record: QueuedRecord, now: datetime) -> bool:
        if record.record_id in self.t.queue or record.record_id in self.t.dead:
            return False
        self.t.queue[record.record_id] = (record, "PENDING", now)
        return True

    def due(self, now: datetime, limit: int) -> list[QueuedRecord]:
        due = sorted(((at, r.enqueued_at, r.record_id, r) for r, state, at
                      in self.t.queue.values() if state == "PENDING" and at <= now))
        return [entry[-1] for entry in due[:limit]]

    def next_due(self) -> datetime | None:
        return min((at for _, state, at in self.t.queue.values() if state == "PENDING"),
                   default=None)

    def delivered(self, record_id: str, now: datetime) -> None:
        record, _, at = self.t.queue[record_id]
        self.t.queue[record_id] = (replace(record, last_error=""), "DELIVERED", at)

    def retry_later(self, record_id: str, attempts: int, at: datetime, error: str) -> None:
        record, state, _ = self.t.queue[record_id]
        self.t.queue[record_id] = (replace(record, attempts=attempts, last_error=error),
                                   state, at)

    def dead(self, record_id: str, attempts: int, error: str, now: datetime) -> None:
        record, _, _ = self.t.queue.pop(record_id)
        self.t.dead[record_id] = replace(record, attempts=attempts, last_error=error)

    def replay(self, record_ids: Sequence[str], now: datetime) -> int:
        chosen = [i for i in (record_ids or list(self.t.dead)) if i in self.t.dead]
        for record_id in chosen:
            record = self.t.dead.pop(record_id)
            self.t.queue[record_id] = (replace(record, attempts=0, last_error=""), "PENDING",
                                       now)
        return len(chosen)


class FakeTraceInbox:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    def cursor(self, name: str) -> str:
        return self.t.cursors.get(name, "")

    def set_cursor(self, name: str, value: str, now: datetime) -> None:
        self.t.cursors[name] = value

    def add(self, records: Sequence[TraceRecord], now: datetime) -> int:
        known = {(r.record_id, h) for r, h, _, _ in self.t.traces.values()}
        new = 0
        for record in records:
            key = (record.record_id, content_of(record)[1])
            if key not in known:
                known.add(key)
                self.t.traces[len(self.t.traces) + 1] = (record, key[1], "PENDING", 0)
                new += 1
        return new

    def pending(self, limit: int) -> list[InboxRecord]:
        return [InboxRecord(seq, r, attempts) for seq, (r, _, state, attempts)
                in sorted(self.t.traces.items()) if state == "PENDING"][:limit]

    def settle(self, outcomes: Sequence[tuple[int, CaptureOutcome]], now: datetime) -> None:
        for seq, outcome in outcomes:
            record, digest, _, attempts = self.t.traces[seq]
            self.t.traces[seq] = (record, digest, outcome.delivery.value, attempts + 1)

    def attempted(self, seqs: Sequence[int], error: str) -> None:
        for seq in seqs:
            record, digest, state, attempts = self.t.traces[seq]
            self.t.traces[seq] = (record, digest, state, attempts + 1)


class FakeEventInbox:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    def claim(self, consumer: str, event_id: str) -> bool:
        if (consumer, event_id) in self.t.inbox:
            return False
        self.t.inbox.add((consumer, event_id))
        return True


class FakeUnitOfWork(FakeUnitOfWorkBase[Tables]):
    imports: FakeImports

    def _open(self, working: Tables) -> None:
        self.imports = FakeImports(working)
        self.events = FakeEventInbox(working)
        self.inbox = FakeTraceInbox(working)
        self.sync = FakeSync(working)
        self.security = FakeSecurity(working)
        self.outbound = FakeOutbound(working)

    def commit(self) -> None:
        database: FakeDatabase = self.database  # type: ignore[assignment]
        if database.fail_commits:
            database.fail_commits -= 1
            raise ConnectionError("the database went away")
        super().commit()


def trace(number: int, batch_id: str = "B37TFAH8GSDF6M03", **activity: object
          ) -> TraceRecord:
    return TraceRecord.model_validate({
        "record_id": f"37-T{number:09d}", "batch_id": batch_id,
        "occur_time": "2024-05-01T08:00:00+08:00",
        "activity": {"type": "PLANTING", "variety": "济麦22", "area_mu": "12.5", **activity}})


class FakeFlow:
    """flow's CaptureRecords: idempotent by (province, record id); refuses records of
    batches it does not know and changed records. `failures` are raised, one per call."""

    def __init__(self, batches: Sequence[str] = ("B37TFAH8GSDF6M03",)) -> None:
        self.batches = set(batches)
        self.stored: dict[tuple[str, str], TraceRecord] = {}
        self.failures: list[Exception] = []
        self.calls = 0

    def capture(self, province: str, records: Sequence[TraceRecord]) -> list[CaptureOutcome]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        outcomes = []
        for record in records:
            key = (province, record.record_id)
            if record.batch_id not in self.batches:
                outcomes.append(CaptureOutcome("REFUSED", "NOT_FOUND: no such batch"))
            elif key in self.stored:
                same = self.stored[key] == record
                outcomes.append(CaptureOutcome("REPLAYED") if same else CaptureOutcome(
                    "REFUSED", "ALREADY_EXISTS: SOURCE_RECORD_CONFLICT"))
            else:
                self.stored[key] = record
                outcomes.append(CaptureOutcome("STORED"))
        return outcomes


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
        self.pushed: dict[str, NationalRecord] = {}
        self.push_failures: list[Exception] = []
        self.verifies_tokens = True
        self.records: list[TraceRecord] = []

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
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        start = int(cursor or 0)
        end = min(start + (limit or 500), len(self.records))
        return TraceRecordPage(records=self.records[start:end], next_cursor=str(end),
                               has_more=end < len(self.records))

    def push_national_record(self, record: NationalRecord) -> PushResult:
        if self.push_failures:
            raise self.push_failures.pop(0)
        held = self.pushed.get(record.record_id)
        if held is not None and held != record:
            raise PlatformRejected("other content", reason="RECORD_CONFLICT", status=409)
        self.pushed[record.record_id] = record
        return PushResult(record_id=record.record_id, accepted_time=datetime.now(UTC),
                          replayed=held is not None)

    def verify_token(self, token: str) -> TokenVerification:
        if not self.verifies_tokens:
            raise NotSupported("a fake verifies no tokens", reason="NOT_SUPPORTED")
        active = token == f"exchanged-for-province-{self._province}"
        return TokenVerification(active=active, reason="" if active else "TOKEN_INVALID")

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


class FakeDirectory:
    """sso's platform directory: one platform per province; only a token of an
    administrator ("admin-token") may exchange tokens and change stages."""

    def __init__(self, entries: Sequence[PlatformEntry] = ()) -> None:
        self.entries = {e.province: e for e in entries}

    def find(self, province: str) -> PlatformEntry | None:
        return self.entries.get(province)

    def exchange_token(self, platform_id: str, credentials: str) -> str:
        if credentials != "admin-token":
            raise NationalRefused("sso: for administrators only", reason="NOT_PERMITTED")
        return f"exchanged-for-{platform_id}"

    def connect(self, platform_id: str, credentials: str) -> PlatformEntry:
        if credentials != "admin-token":
            raise NationalRefused("sso: for administrators only", reason="NOT_PERMITTED")
        entry = next(e for e in self.entries.values() if e.platform_id == platform_id)
        self.entries[entry.province] = replace(entry, stage="CONNECTED")
        return self.entries[entry.province]
