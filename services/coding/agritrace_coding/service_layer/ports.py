"""What the coding use cases need from the outside world. Codes come in hundreds of
thousands, so the store works on selections (a list of codes or a serial range) set-wise
instead of loading one object per code."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Self

from agritrace_coding.domain.model import (
    CodeRecord,
    CodeState,
    Derivation,
    DeriveReason,
    Issuance,
    SerialRange,
)
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import RequestLog
from agritrace_kernel.registry_client import SubjectDirectory, SubjectInfo

Selection = Sequence[str] | SerialRange
"""Codes named one by one, or a serial range of one issuance."""

__all__ = ["SubjectDirectory", "SubjectInfo"]  # re-exported for the use cases and fakes


@dataclass(frozen=True)
class Move:
    """A state change applied to a selection: codes in one of `sources` move to `target`
    (`bound_target` instead for codes whose issuance names a product batch)."""

    sources: frozenset[CodeState]
    target: CodeState
    bound_target: CodeState | None = None
    product_batch_id: str | None = None  # bind the codes to this batch
    reason: str | None = None


class CodeStore(Protocol):
    def add_issuance(self, issuance: Issuance) -> None: ...
    def add_codes(
        self, issuance_id: int, first_serial: int, codes: Sequence[str], state: CodeState
    ) -> None:
        """Bulk insert; a code that already exists raises DuplicateCode (the caller retries
        with fresh codes)."""
        ...
    def set_quantity(self, issuance_id: int, quantity: int) -> None: ...
    def get_issuance(self, issuance_id: int) -> Issuance | None: ...
    def list_issuances(
        self, subject_id: str, before: tuple[datetime, int] | None, limit: int
    ) -> list[Issuance]: ...
    def state_counts(self, issuance_id: int) -> dict[CodeState, int]: ...
    def list_codes(
        self, issuance_id: int, after_serial: int, limit: int, state: CodeState | None
    ) -> list[CodeRecord]: ...
    def find_codes(self, codes: Sequence[str]) -> dict[str, CodeRecord]: ...
    def codes_in_state(
        self, issuance_id: int, states: frozenset[CodeState]
    ) -> list[str]: ...
    def range_offenders(
        self, selection: SerialRange, sources: frozenset[CodeState], limit: int
    ) -> tuple[int, dict[str, CodeState]]:
        """How many codes of the range are not in `sources`, and a few of them."""
        ...
    def apply(self, selection: Selection, move: Move, at: datetime) -> int:
        """Applies the move to the codes of the selection that are in its sources; the
        number moved."""
        ...
    def add_derivation(
        self, issuance_id: int, parents: Sequence[str], reason: DeriveReason
    ) -> None: ...
    def derivation_of(self, issuance_id: int) -> Derivation | None: ...
    def touch_line(self, issuance_id: int, at: datetime) -> bool:
        """Records activity of a production-line session (its heartbeat); False when the
        session is closed."""
        ...
    def close_line(self, issuance_id: int, at: datetime) -> None: ...
    def open_lines(self, idle_since: datetime) -> list[int]:
        """Line sessions not closed and silent since `idle_since`."""
        ...
    def derivation_consuming(self, code: str) -> int | None:
        """The derived issuance a code went into, if any."""
        ...


class DuplicateCode(Exception):
    """A freshly generated code collided with a stored one."""


class CodeReader(Protocol):
    def find(self, code: str) -> CodeRecord | None:
        """One code, on the scan path (no unit of work)."""
        ...

    def serials(self, selection: SerialRange, chunk: int) -> Iterator[list[tuple[int, str]]]:
        """(serial, code) pairs of the range in serial order, `chunk` at a time, without
        holding them all."""
        ...


class UnitOfWork(Protocol):
    @property
    def codes(self) -> CodeStore: ...
    @property
    def requests(self) -> RequestLog: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None: ...
    def publish(self, event: Event) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
