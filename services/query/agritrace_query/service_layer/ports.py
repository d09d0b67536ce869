"""What the query service's use cases need of the world: the read model (as the origin scan,
the traces and the statistics read it), the query log, the origin cache, a clock and the
outbox of the service's own events. Adapters implement them; unit tests use small fakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self

from agritrace_query.domain.graph import BatchInfo, ChainReader
from agritrace_query.domain.origin import BatchOrigin, CodeFacts
from agritrace_query.domain.query_log import LogEntry, QueryRecord
from agritrace_query.domain.statistics import Period, Rollup
from agritrace_query.service_layer.projection_ports import OriginCache, batch_key, code_key

__all__ = [
    "Clock", "LogFilter", "OriginCache", "OriginReader", "OutboxUnitOfWork", "QueryLogReader",
    "QueryLogSink", "QueryReads", "ReadUnitOfWork", "batch_key", "code_key",
]


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class OriginReader(Protocol):
    """The scan path's reads: one indexed point query each."""

    def code_facts(self, code: str) -> CodeFacts | None:
        """A code's own facts (state, batch): None if unknown."""
        ...

    def code_origin(self, code: str
                    ) -> tuple[CodeFacts, Callable[[], BatchOrigin | None]] | None:
        """A code (None if unknown) with its batch's origin from the same query, decoded only
        when called (None when the code names no batch or the batch is not complete yet)."""
        ...

    def batch_origin(self, batch_id: str) -> BatchOrigin | None: ...


class QueryReads(ChainReader, Protocol):
    """The read model as traces and statistics read it (inside a read unit of work)."""

    def code_batch(self, code: str) -> str | None:
        """The batch a code is bound to: None for an unknown code, "" when unbound."""
        ...

    def batch(self, batch_id: str) -> BatchInfo | None: ...

    def rollup(self, division_code: str, group_length: int, period: Period) -> Rollup:
        """Registered subjects (by period end), active subjects and the daily counters of the
        divisions under `division_code`, grouped by the first `group_length` digits."""
        ...

    def active_subjects(self, division_code: str, period: Period) -> int:
        """Distinct subjects of the division active in the period."""
        ...


@dataclass(frozen=True)
class LogFilter:
    asker: str = ""
    rpc: str = ""
    division_prefix: str = ""  # target_division starts with it
    start_time: datetime | None = None  # inclusive
    end_time: datetime | None = None  # exclusive


class QueryLogReader(Protocol):
    def page(self, selection: LogFilter, before_seq: int | None,
             limit: int) -> list[LogEntry]:
        """Entries matching `selection`, newest first, with seq < before_seq."""
        ...

    def entries(self, first_seq: int, last_seq: int) -> list[LogEntry]:
        """Entries first_seq..last_seq in seq order (missing ones are simply absent)."""
        ...

    def newest_seq(self) -> int: ...

    def scans(self, division_code: str, group_length: int, period: Period) -> dict[str, int]:
        """GetOriginInfo entries of the period whose target division lies under
        `division_code`, counted by its first `group_length` digits."""
        ...


class ReadUnitOfWork(Protocol):
    """A read-only transaction over the read model and the query log."""

    @property
    def reads(self) -> QueryReads: ...
    @property
    def log(self) -> QueryLogReader: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None: ...


class OutboxUnitOfWork(Protocol):
    """A transaction that records the service's own events (published by the relay)."""

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None: ...
    def publish(self, event: Any) -> None: ...
    def commit(self) -> None: ...


class QueryLogSink(Protocol):
    """Where use cases put their log entries: enqueued, written (and chained) in the
    background, so no call waits for the log's disk."""

    def append(self, record: QueryRecord) -> None: ...
