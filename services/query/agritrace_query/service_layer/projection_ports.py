"""What the read model's writers (the event handlers and the rebuild) need of the world:
the projection store, its unit of work, the origin-view cache and the source services' event
logs. Adapters implement them; tests use fakes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, Self

from agritrace_kernel.events.model import Event

# -- facts the handlers write ----------------------------------------------------------------

# A code's states in the only order it can move through them (CONSUMED and VOID are both
# final and exclude each other): the furthest state reported is the current one.
CODE_STATES = ("ISSUED", "PRINTED", "ACTIVE", "CONSUMED", "VOID")


@dataclass(frozen=True)
class SubjectFacts:
    subject_id: str
    kind: str
    name: str
    division_code: str
    status: str
    version: int


@dataclass(frozen=True)
class Sighting:
    """What storing a subject changed about its registration: `first` when the read model had
    never seen it; else `moved_from` (time, division) when this event is earlier than the one
    its registration was counted at, so the count moves to this event's day and division."""

    subject_id: str
    first: bool
    moved_from: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class HeldCount:
    """A count made at `division_code` (a province, or "") while its subject was unknown."""

    subject_id: str
    day: date
    metric: str
    division_code: str
    count: int


@dataclass(frozen=True)
class CodeFacts:
    """What one event says about a set of codes; "" for what it does not know. `state` is the
    least the event knows (a code named by any event was issued, so ISSUED at the least)."""

    state: str
    at: datetime
    issuance_id: str = ""
    subject_id: str = ""
    batch_id: str = ""


@dataclass(frozen=True)
class BatchFacts:
    batch_id: str
    subject_id: str
    subject_division: str
    product_code: str
    product_name: str
    category: str
    quantity: str
    unit: str
    production_date: date
    origin_division: str
    certificate: str  # JSON, "" when none
    parent_batch_ids: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class TraceFacts:
    """One batch's share of an internal_trace_recorded event."""

    batch_id: str
    flags: tuple[str, ...] | None  # None: the event did not say
    at: datetime  # when the event occurred (orders flag updates)
    passed: int = 0
    failed: int = 0
    last_inspection_at: datetime | None = None
    last_inspection_result: str = ""


@dataclass(frozen=True)
class ShipmentFacts:
    shipment_id: str
    batch_id: str
    seller_subject_id: str
    buyer_subject_id: str
    seller_province: str
    buyer_province: str
    quantity: str
    unit: str
    code_count: int
    ship_time: datetime


@dataclass(frozen=True)
class TransformationInputFacts:
    transformation_id: str
    input_batch_id: str
    output_batch_id: str
    subject_id: str
    kind: str
    quantity: str
    unit: str
    occurred_at: datetime


@dataclass(frozen=True)
class MarketEntryFacts:
    entry_id: str
    market_subject_id: str
    market_province: str
    batch_id: str
    code: str
    admitted: bool
    refusal: str
    check_time: datetime


@dataclass(frozen=True)
class ReplayPosition:
    source: str
    position: int
    page_token: str
    done: bool


class ProjectionStore(Protocol):
    """The read model's tables as the handlers change them. Every write is an upsert that
    tolerates any order of events and changes nothing when repeated with the same facts
    (counters aside: the inbox keeps an event from being counted twice)."""

    def sight_subjects(self, subjects: Sequence[SubjectFacts],
                       seen_at: datetime) -> list[Sighting]:
        """Stores the subjects (a subject keeps its highest version; its registration is the
        earliest event about it) and moves their activity rows to their division."""
        ...

    def subject_divisions(self, subject_ids: Iterable[str]) -> dict[str, str]:
        """The division of each subject the read model knows."""
        ...

    def wait_for_subjects(self, subject_ids: Iterable[str]) -> None:
        """Until this transaction ends, no other stores these subjects (sight_subjects waits),
        and this one sees them if another stored them meanwhile: so a count held for a
        subject not known yet is seen by the handler that stores it."""
        ...

    def put_codes(self, codes: Sequence[str], facts: CodeFacts) -> None: ...

    def code_subjects(self, codes: Sequence[str]) -> dict[str, int]:
        """How many of `codes` each subject was issued ("" for codes not issued yet)."""
        ...

    def add_lineage(self, parents: Sequence[str], children: Sequence[str]) -> None: ...

    def put_batch(self, batch: BatchFacts) -> None: ...

    def put_traces(self, traces: Sequence[TraceFacts]) -> None: ...

    def put_shipment(self, shipment: ShipmentFacts) -> None: ...

    def mark_received(self, shipment_id: str, batch_id: str, seller_subject_id: str,
                      buyer_subject_id: str, received_at: datetime) -> None: ...

    def shipment_provinces(self, shipment_id: str) -> tuple[str, str] | None:
        """(seller province, buyer province) of a shipment whose details arrived."""
        ...

    def put_transformation_inputs(self, inputs: Sequence[TransformationInputFacts]) -> None: ...

    def put_market_entry(self, entry: MarketEntryFacts) -> None: ...

    def add_counts(self, deltas: Mapping[tuple[date, str, str], int]) -> None:
        """Adds each amount (may be negative) to its daily counter (day, division_code,
        metric), all in one statement; a counter brought to zero is dropped."""
        ...

    def hold_count(self, held: HeldCount) -> None:
        """Remembers a count made while its subject was unknown (adds to one held before)."""
        ...

    def take_held_counts(self, subject_ids: Iterable[str]) -> list[HeldCount]:
        """The counts held for these subjects, no longer held."""
        ...

    def mark_active(self, subject_id: str, day: date, division_code: str) -> None: ...

    # -- rebuild ------------------------------------------------------------------------------

    def clear(self, consumer: str) -> None:
        """Empties the read model (never the query log) and `consumer`'s inbox."""
        ...

    def replay_positions(self) -> dict[str, ReplayPosition]: ...

    def save_replay_position(self, position: ReplayPosition, at: datetime) -> None: ...


class ProjectionUnitOfWork(Protocol):
    """A transaction over the read model with the inbox of handled events (`events.claim`)."""

    events: Any  # the kernel's EventStore: claim(consumer, event_id)

    @property
    def projections(self) -> ProjectionStore: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None: ...
    def commit(self) -> None: ...


# -- the origin-view cache -------------------------------------------------------------------

def code_key(code: str) -> str:
    """Cache key of a code's own facts (state, batch id). A batch's facts (product, producer,
    certificate, inspections, flags) belong under batch_key only, so an event about a batch
    invalidates one key instead of one per code."""
    return f"origin:code:{code}"


def batch_key(batch_id: str) -> str:
    return f"origin:batch:{batch_id}"


class OriginCache(Protocol):
    """Origin views by key (code_key, batch_key), and the per-place count of scans of unknown
    codes. Implementations never raise on a cache failure: a failed get is a miss."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def get_text(self, key: str) -> str | None:
        """The view under `key` as the JSON text stored (None when missing)."""
        ...

    @property
    def holds_views_locally(self) -> bool:
        """Whether this process may hold views itself (in-process, or a subscribed near
        cache): a first scan then reads its code's row alone and looks for its batch's view
        here (get_local_text) before reading the batch."""
        ...

    def get_local_text(self, key: str) -> str | None:
        """As get_text, but only what this process holds (no round trip): None otherwise."""
        ...

    def get_origin(self, code: str) -> tuple[str | None, str | None]:
        """The code's view (code_key) and the view of the batch its `batch_id` names
        (batch_key), in one look-up, as the JSON texts stored: what a scan needs (it decodes
        them only when it has not answered from the same texts before). (None, None) when the
        code's view is missing; the batch's is None when missing or when the code names no
        batch."""
        ...

    def set(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """`value` must be JSON-serialisable."""
        ...

    def invalidate(self, codes: Iterable[str], batch_ids: Iterable[str]) -> None: ...

    def clear(self) -> None:
        """Drops every origin view (the scan counters stay)."""
        ...

    def count_unknown_scan(self, place: str, window_seconds: int) -> int:
        """Counts one scan of an unknown or malformed code from `place`; the number of such
        scans from there in the current window (which starts with the first of them)."""
        ...


# -- the source services' event logs ---------------------------------------------------------

@dataclass(frozen=True)
class LoggedEvent:
    position: int
    event: Event


@dataclass(frozen=True)
class EventPage:
    events: list[LoggedEvent]
    next_page_token: str  # "" when the page reached the end of the log
    newest_position: int


class EventLog(Protocol):
    """The event logs of the source services (agritrace.events.v1.EventLogService)."""

    def list_events(self, source: str, page_token: str, page_size: int) -> EventPage: ...


@dataclass
class Touched:
    """The codes and batches an event changed, whose cached origin views must go."""

    codes: set[str] = field(default_factory=set)
    batch_ids: set[str] = field(default_factory=set)

    def update(self, other: Touched) -> None:
        self.codes |= other.codes
        self.batch_ids |= other.batch_ids

    def __bool__(self) -> bool:
        return bool(self.codes or self.batch_ids)
