"""The coding domain: issuances of trace codes, the life of a code, derivations. Free of any
framework; bulk state changes are expressed as moves the store applies set-wise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from agritrace_kernel.errors import FailedPrecondition, InvalidArgument

MAX_QUANTITY = 1_000_000
MAX_ONLINE_QUANTITY = 10_000
MAX_LISTED_CODES = 10_000  # codes named one by one in a request
MAX_LINE_REQUEST = 10_000
MAX_DERIVED = 10_000
MAX_REASON = 500
MAX_BATCH_ID = 64


class IssueMode(StrEnum):
    ONLINE = "ONLINE"
    DOWNLOAD = "DOWNLOAD"
    PRE_PRINT = "PRE_PRINT"
    PRODUCTION_LINE = "PRODUCTION_LINE"
    DERIVED = "DERIVED"


class CodeState(StrEnum):
    ISSUED = "ISSUED"
    PRINTED = "PRINTED"
    ACTIVE = "ACTIVE"
    CONSUMED = "CONSUMED"
    VOID = "VOID"


# Every legal move; anything else is refused.
MOVES: dict[CodeState, frozenset[CodeState]] = {
    CodeState.ISSUED: frozenset({CodeState.PRINTED, CodeState.VOID}),
    CodeState.PRINTED: frozenset({CodeState.ACTIVE, CodeState.VOID}),
    CodeState.ACTIVE: frozenset({CodeState.CONSUMED, CodeState.VOID}),
    CodeState.CONSUMED: frozenset(),
    CodeState.VOID: frozenset(),
}


def sources_of(target: CodeState) -> frozenset[CodeState]:
    """The states a code may move to `target` from."""
    return frozenset(state for state, targets in MOVES.items() if target in targets)


class LabelFormat(StrEnum):
    SVG = "SVG"
    PNG = "PNG"
    ZPL = "ZPL"  # Zebra ZPL II, for thermal printers on production lines
    PDF = "PDF"

    @property
    def content_type(self) -> str:
        return _LABEL_CONTENT_TYPES[self]


_LABEL_CONTENT_TYPES = {
    LabelFormat.SVG: "image/svg+xml",
    LabelFormat.PNG: "image/png",
    LabelFormat.ZPL: "application/zpl",
    LabelFormat.PDF: "application/pdf",
}


class DeriveReason(StrEnum):
    MIX = "MIX"  # 混批
    REPACK = "REPACK"  # 重新包装
    PROCESS = "PROCESS"
    SPLIT = "SPLIT"


@dataclass(frozen=True)
class Issuance:
    issuance_id: int
    subject_id: str
    subject_division: str  # the subject's county code, for regulators' jurisdiction
    province: str
    mode: IssueMode
    quantity: int
    product_batch_id: str
    printer_subject_id: str
    line_id: str
    created_at: datetime
    created_by: str  # account id

    def ordered_for(self) -> tuple[str, ...]:
        """Subjects whose operators may act on the issuance's codes."""
        return (self.subject_id, self.printer_subject_id) if self.printer_subject_id \
            else (self.subject_id,)


@dataclass(frozen=True)
class CodeRecord:
    """One code as stored, with what its issuance says about ownership."""

    code: str
    issuance_id: int
    serial: int
    state: CodeState
    product_batch_id: str
    subject_id: str
    subject_division: str
    printer_subject_id: str


@dataclass(frozen=True)
class Derivation:
    issuance_id: int  # the derived issuance (its codes are the children)
    subject_id: str
    reason: DeriveReason
    parent_codes: tuple[str, ...]
    child_codes: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class SerialRange:
    issuance_id: int
    first_serial: int
    last_serial: int

    @property
    def size(self) -> int:
        return self.last_serial - self.first_serial + 1


class IllegalMove(FailedPrecondition):
    reason = "ILLEGAL_STATE_MOVE"


def refuse_illegal(target: CodeState, offenders: dict[str, CodeState], total: int) -> None:
    """Refuses a move when some selected codes may not make it; names a few of them."""
    if not offenders:
        return
    shown = ", ".join(f"{code} is {state}" for code, state in list(offenders.items())[:5])
    raise IllegalMove(
        f"{total} of the selected codes cannot become {target}: {shown}",
        metadata={"target_state": str(target), "refused": str(total)},
    )


def check_quantity(quantity: int, limit: int, field: str = "quantity") -> int:
    if quantity < 1:
        raise InvalidArgument.of(field, "must be at least 1")
    if quantity > limit:
        raise InvalidArgument.of(field, f"must be at most {limit:,}")
    return quantity


def check_batch_id(value: str, field: str = "product_batch_id", *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument.of(field, "is required")
    if len(value) > MAX_BATCH_ID:
        raise InvalidArgument.of(field, f"is longer than {MAX_BATCH_ID} characters")
    if value and not value.isprintable():
        raise InvalidArgument.of(field, "contains control characters")
    return value


def check_reason(value: str, field: str = "reason") -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument.of(field, "is required")
    if len(value) > MAX_REASON:
        raise InvalidArgument.of(field, f"is longer than {MAX_REASON} characters")
    return value
