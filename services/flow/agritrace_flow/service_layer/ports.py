"""What the flow use cases need from the outside world: the store (repositories in one unit of
work), the registry (subjects) and the coding service (codes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, Self

from agritrace_flow.domain.model import (
    Batch,
    InternalTrace,
    MarketEntry,
    Quantity,
    Shipment,
    Transformation,
)
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import RequestLog, RequestRecord
from agritrace_kernel.registry_client import SubjectDirectory, SubjectInfo

__all__ = ["SubjectDirectory", "SubjectInfo"]


@dataclass(frozen=True)
class CodeInfo:
    """What the coding service says about a code."""

    code: str
    exists: bool
    state: str  # coding CodeState name (ISSUED, PRINTED, ACTIVE, CONSUMED, VOID); "" unknown
    subject_id: str
    product_batch_id: str


class CodeService(Protocol):
    def lookup(self, code: str) -> CodeInfo:
        """The code's state and binding. Raises InvalidArgument for a malformed code,
        Unavailable when coding cannot be asked."""
        ...

    def bind(self, request_id: str, codes: Sequence[str], batch_id: str) -> int:
        """Activates printed codes for a batch (idempotent by request_id); how many."""
        ...

    def derive(self, request_id: str, subject_id: str, parents: Sequence[str], batch_id: str,
               quantity: int, reason: str) -> list[str]:
        """New codes for a new batch replacing `parents` (idempotent by request_id)."""
        ...


@dataclass(frozen=True)
class HistoryEntry:
    batch_id: str
    occurred_at: datetime
    kind: str  # CREATED, INTERNAL_TRACE, SHIPPED, RECEIVED, MARKET_ENTRY, TRANSFORMED_...
    subject_id: str
    other_subject_id: str
    record_id: str
    summary: str
    seq: int = 0  # assigned by the store: order among entries of the same instant


@dataclass(frozen=True)
class BatchFlags:
    """What recording production records needs of a batch: a slim read of thousands."""

    batch_id: str
    subject_id: str
    province: str  # of origin
    production_date: date
    flags: tuple[str, ...]
    ended_at: datetime | None  # the latest harvest or slaughter record's time


class FlowStore(Protocol):
    def add_batch(self, batch: Batch, codes: Sequence[str]) -> None: ...
    def add_batches(self, batches: Sequence[tuple[Batch, Sequence[str]]]) -> None:
        """Many new batches, each with its codes, in one go."""
        ...
    def get_batch(self, batch_id: str) -> Batch | None: ...
    def get_batches(self, batch_ids: Sequence[str]) -> dict[str, Batch]: ...
    def batch_by_certificate(self, certificate_id: str) -> Batch | None: ...
    def batches_by_certificate(self, certificate_ids: Sequence[str]) -> dict[str, Batch]:
        """The batches carrying these certificates, by certificate id."""
        ...
    def batch_codes(self, batch_id: str) -> list[str]: ...
    def set_flag_states(self, states: Sequence[tuple[str, Sequence[str], datetime | None]]
                        ) -> None:
        """(batch id, flags, end of production) of batches whose flags were judged."""
        ...
    def holding(self, batch_id: str, subject_id: str) -> Quantity | None: ...
    def holdings(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Quantity]:
        """What is held among (batch id, subject id) keys, in one read."""
        ...
    def set_holding(self, batch_id: str, subject_id: str, quantity: Quantity) -> None: ...
    def put_holdings(self, new: Sequence[tuple[str, str, Quantity]],
                     changed: Sequence[tuple[str, str, Quantity]]) -> None:
        """(batch id, subject id, quantity) holdings: `new` ones not stored yet, `changed`
        ones stored before."""
        ...
    def add_shipment(self, shipment: Shipment) -> None: ...
    def add_shipments(self, shipments: Sequence[Shipment]) -> None: ...
    def get_shipment(self, shipment_id: str) -> Shipment | None: ...
    def get_shipments(self, shipment_ids: Sequence[str]) -> dict[str, Shipment]: ...
    def shipments_of(self, batch_id: str) -> list[Shipment]: ...
    def mark_received(self, shipment_id: str, at: datetime) -> None: ...
    def add_entry(self, entry: MarketEntry) -> None: ...
    def get_entry(self, entry_id: str) -> MarketEntry | None: ...
    def add_transformation(self, transformation: Transformation) -> None: ...
    def get_transformation(self, transformation_id: str) -> Transformation | None: ...
    def transformations_of(self, batch_id: str) -> list[Transformation]: ...
    def add_traces(self, traces: Sequence[InternalTrace]) -> None: ...
    def find_traces(self, keys: Sequence[tuple[str, str]]
                    ) -> dict[tuple[str, str], InternalTrace]:
        """The stored records among (source province, source record id) keys."""
        ...
    def traces_of(self, batch_id: str) -> list[InternalTrace]: ...
    def batch_flags(self, batch_ids: Sequence[str]) -> dict[str, BatchFlags]:
        """Read to judge flags: the batches stay locked until the unit of work ends, so
        concurrent writers of one batch's records judge one after the other."""
        ...
    def applications(self, ends: dict[str, datetime]) -> dict[str, list[InternalTrace]]:
        """For each batch id, its pesticide and drug records with an interval whose interval
        had not passed by the given end of production — at least those (a store may hand back
        all the batch's records with an interval: the others raise no flag); one read, and
        their details may be left out."""
        ...
    def entries_of(self, batch_id: str) -> list[MarketEntry]: ...
    def batches_between(self, *, subject_id: str = "", product_code: str = "",
                        start: datetime | None = None,
                        end: datetime | None = None) -> list[Batch]: ...
    def add_imported(self, event_id: str, subject_id: str, event_time: datetime, kind: str,
                     event_json: str) -> bool:
        """Stores an imported EPCIS event; False when its id was stored before."""
        ...
    def imported(self, subject_id: str, start: datetime | None,
                 end: datetime | None) -> list[str]:
        """The JSON of the events a subject imported in a time range."""
        ...
    def add_history(self, entries: Sequence[HistoryEntry]) -> None: ...
    def history(self, batch_id: str, after: tuple[datetime, int] | None,
                limit: int) -> list[HistoryEntry]: ...


class FlowRequestLog(RequestLog, Protocol):
    """The request log, read and written many ids at a time by a capture message."""

    def find_many(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]: ...
    def record_many(self, records: Sequence[tuple[str, RequestRecord]]) -> None: ...


class UnitOfWork(Protocol):
    @property
    def flow(self) -> FlowStore: ...
    @property
    def requests(self) -> FlowRequestLog: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None: ...
    def publish(self, event: Event) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


@dataclass(frozen=True)
class ImportedRecord:
    """An event of an imported EPCIS document that maps onto the model."""

    index: int
    event_id: str
    kind: str
    event_time: datetime
    event_json: str  # as stored and exported again


@dataclass(frozen=True)
class RefusedRecord:
    """An event of an imported EPCIS document that does not map, and why."""

    index: int
    event_id: str
    reason: str


class EpcisCodec(Protocol):
    def export(self, *, batches: Sequence[Batch], batch_codes: dict[str, list[str]],
               shipments: Sequence[Shipment], entries: Sequence[MarketEntry],
               transformations: Sequence[Transformation], traces: Sequence[InternalTrace],
               imported: Sequence[str], subject_divisions: dict[str, str],
               created_at: datetime) -> tuple[bytes, int]:
        """The records as an EPCIS 2.0 JSON-LD document (UTF-8) and its event count."""
        ...

    def read(self, document: bytes) -> list[ImportedRecord | RefusedRecord]:
        """The events of a document; ValueError when the document as a whole is refused."""
        ...
