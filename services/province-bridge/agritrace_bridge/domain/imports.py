"""The historical import as the bridge keeps it: a run that pages through the province's
subjects, its checkpoint (the provincial page token of the next page) and the outcome of
every record the national registry answered.

A run moves its checkpoint only after the registry acknowledged a page and the page's
outcomes are stored, in one transaction; so a bridge killed at any moment resends at most
the one page it had not stored, which the registry answers as replays (its import is
idempotent by source record id) and the report keeps once."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum


class RunState(StrEnum):
    RUNNING = "RUNNING"
    # Stopped on an error retrying cannot fix (a contract violation, a refusal); resumable.
    FAILED = "FAILED"
    COMPLETED = "COMPLETED"


class Outcome(StrEnum):
    """How the registry ended one record (registry ImportOutcome without its prefix)."""

    CREATED = "CREATED"
    MERGED = "MERGED"
    CONFLICT = "CONFLICT"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class RecordOutcome:
    """The registry's answer for one provincial subject. `field` and `reason` name fields
    and rules, never values (personal data is blotted out before it is stored)."""

    source_record_id: str
    outcome: Outcome
    subject_id: str = ""
    field: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Counts:
    created: int = 0
    merged: int = 0
    conflict: int = 0
    rejected: int = 0

    @property
    def total(self) -> int:
        return self.created + self.merged + self.conflict + self.rejected

    def plus(self, outcomes: list[RecordOutcome]) -> Counts:
        by = {o: 0 for o in Outcome}
        for record in outcomes:
            by[record.outcome] += 1
        return Counts(self.created + by[Outcome.CREATED], self.merged + by[Outcome.MERGED],
                      self.conflict + by[Outcome.CONFLICT], self.rejected + by[Outcome.REJECTED])


@dataclass(frozen=True)
class ImportRun:
    import_id: str
    province: str
    request_id: str
    state: RunState
    started_at: datetime
    updated_at: datetime
    # The provincial page token of the next page to import ("" = the first page, or done).
    page_token: str = ""
    pages: int = 0
    # Subjects the province said it holds, at the last page read.
    total_size: int = 0
    counts: Counts = field(default_factory=Counts)
    finished_at: datetime | None = None
    # Why the run failed (reason and message, no personal data), or the last retried error.
    last_error: str = ""
    # Consecutive failed attempts at the current page (reset by every stored page).
    attempts: int = 0

    @property
    def active(self) -> bool:
        return self.state is RunState.RUNNING

    def after_page(self, next_token: str, total_size: int, new: list[RecordOutcome],
                   now: datetime) -> ImportRun:
        """The run once a page was acknowledged: `new` are the outcomes not stored before
        (a replayed page adds none); an empty next token ends the run."""
        done = not next_token
        return replace(
            self, page_token=next_token, pages=self.pages + 1, total_size=total_size,
            counts=self.counts.plus(new), updated_at=now, attempts=0, last_error="",
            state=RunState.COMPLETED if done else RunState.RUNNING,
            finished_at=now if done else None)

    def retrying(self, error: str, now: datetime) -> ImportRun:
        return replace(self, attempts=self.attempts + 1, last_error=error, updated_at=now)

    def failed(self, error: str, now: datetime) -> ImportRun:
        return replace(self, state=RunState.FAILED, last_error=error, updated_at=now)

    def resumed(self, now: datetime) -> ImportRun:
        """A failed run started again from its checkpoint."""
        return replace(self, state=RunState.RUNNING, attempts=0, updated_at=now)
