"""Small hand-written fakes of the coding service's ports, as in "Architecture Patterns with
Python".

`FakeDatabase` is the "database": the committed tables plus the events published by committed
units of work. `FakeUnitOfWork` works on a private copy of the tables and replaces the
committed ones only on `commit()`, so a use case that fails half-way leaves nothing behind,
and only committed events count as published.

`FakeCodeStore` behaves like SqlAlchemyCodeStore where it matters to the use cases:
- a code row carries only what differs per code; its batch is its own (set by activation)
  or else its issuance's, as the SQL join's coalesce reads it;
- `add_codes` refuses a code that exists (or a serial taken) with DuplicateCode;
- `apply` moves only the selected codes currently in `move.sources`, to `bound_target` for
  codes bound to a batch (their own, or their issuance's), and returns how many moved;
- unique keys elsewhere (issuance id, request id, a parent consumed once) surface as
  AlreadyExists(CONCURRENT_DUPLICATE), as the SQL unit of work reports an IntegrityError.

Rows are immutable and replaced on change, so copying a unit of work's tables copies the
dicts only: cheap even with tens of thousands of codes.

This module is loaded by conftest.py (tests run with --import-mode=importlib, so the test
directory is not on sys.path); tests get these objects through its fixtures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from agritrace_coding.domain import codes as code_format
from agritrace_coding.domain.model import (
    CodeRecord,
    CodeState,
    Derivation,
    DeriveReason,
    Issuance,
    IssueMode,
    LabelFormat,
    SerialRange,
)
from agritrace_coding.service_layer.ports import DuplicateCode, Move, Selection, SubjectInfo
from agritrace_kernel.auth.principal import Principal, PrincipalKind, Role
from agritrace_kernel.errors import AlreadyExists, Unavailable
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import RequestRecord
from agritrace_testing.fakes import FakeUnitOfWorkBase

# -- the "database" ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeRow:
    """One row of the codes table."""

    issuance_id: int
    serial: int
    state: CodeState
    product_batch_id: str | None = None  # set by activation; None: the issuance's batch
    void_reason: str | None = None
    changed_at: datetime | None = None


@dataclass(frozen=True)
class LineState:
    """The production-line columns of an issuance row."""

    last_activity_at: datetime | None
    closed_at: datetime | None = None


@dataclass
class Tables:
    """Everything the coding service stores."""

    issuances: dict[int, Issuance] = field(default_factory=dict)
    codes: dict[str, CodeRow] = field(default_factory=dict)
    # parent code -> (the derived issuance that consumed it, why)
    derivations: dict[str, tuple[int, DeriveReason]] = field(default_factory=dict)
    requests: dict[str, RequestRecord] = field(default_factory=dict)
    lines: dict[int, LineState] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> Tables:
        # Every row is immutable (frozen dataclasses, tuples): copying the tables is enough.
        return Tables(
            issuances=dict(self.issuances),
            codes=dict(self.codes),
            derivations=dict(self.derivations),
            requests=dict(self.requests),
            lines=dict(self.lines),
        )


@dataclass
class FakeDatabase:
    committed: Tables = field(default_factory=Tables)
    published: list[Event] = field(default_factory=list)
    commits: int = 0

    # Read helpers for assertions (committed state only).

    def snapshot(self) -> Tables:
        return self.committed.__deepcopy__({})

    def events_named(self, name: str) -> list[Event]:
        return [event for event in self.published if event.name == name]

    def event_names(self) -> list[str]:
        return [event.name for event in self.published]

    def code(self, code: str) -> CodeRow:
        return self.committed.codes[code]

    def state_of(self, code: str) -> CodeState:
        return self.committed.codes[code].state

    def codes_of(self, issuance_id: int) -> list[str]:
        """The codes of an issuance in serial order."""
        rows = [(row.serial, code) for code, row in self.committed.codes.items()
                if row.issuance_id == issuance_id]
        return [code for _, code in sorted(rows)]

    def states_of(self, issuance_id: int) -> list[CodeState]:
        return [self.committed.codes[code].state for code in self.codes_of(issuance_id)]


def _duplicate(what: str) -> AlreadyExists:
    # What SqlAlchemyUnitOfWork raises for an IntegrityError.
    return AlreadyExists(f"duplicate {what}", reason="CONCURRENT_DUPLICATE")


class FakeCodeStore:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    # -- issuances --------------------------------------------------------------------------

    def add_issuance(self, issuance: Issuance) -> None:
        if issuance.issuance_id in self._tables.issuances:
            raise _duplicate(f"issuance_id {issuance.issuance_id}")
        self._tables.issuances[issuance.issuance_id] = issuance
        if issuance.mode is IssueMode.PRODUCTION_LINE:
            self._tables.lines[issuance.issuance_id] = LineState(issuance.created_at)

    def set_quantity(self, issuance_id: int, quantity: int) -> None:
        issuance = self._tables.issuances.get(issuance_id)
        if issuance is not None:
            self._tables.issuances[issuance_id] = replace(issuance, quantity=quantity)

    def get_issuance(self, issuance_id: int) -> Issuance | None:
        return self._tables.issuances.get(issuance_id)

    def list_issuances(
        self, subject_id: str, before: tuple[datetime, int] | None, limit: int
    ) -> list[Issuance]:
        found = [
            issuance for issuance in self._tables.issuances.values()
            if subject_id in (issuance.subject_id, issuance.printer_subject_id)
            and (before is None or (issuance.created_at, issuance.issuance_id) < before)
        ]
        found.sort(key=lambda issuance: (issuance.created_at, issuance.issuance_id),
                   reverse=True)
        return found[:limit]

    def state_counts(self, issuance_id: int) -> dict[CodeState, int]:
        counts: dict[CodeState, int] = {}
        for row in self._tables.codes.values():
            if row.issuance_id == issuance_id:
                counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    # -- codes ------------------------------------------------------------------------------

    def add_codes(
        self, issuance_id: int, first_serial: int, codes: Sequence[str], state: CodeState
    ) -> None:
        if len(set(codes)) != len(codes) or any(code in self._tables.codes for code in codes):
            raise DuplicateCode("duplicate key value violates unique constraint codes_pkey")
        serials = set(range(first_serial, first_serial + len(codes)))
        if any(row.issuance_id == issuance_id and row.serial in serials
               for row in self._tables.codes.values()):
            raise DuplicateCode("duplicate key value violates uq_codes_issuance_serial")
        for serial, code in enumerate(codes, start=first_serial):
            self._tables.codes[code] = CodeRow(issuance_id, serial, state)

    def _record(self, code: str, row: CodeRow) -> CodeRecord:
        issuance = self._tables.issuances[row.issuance_id]
        return CodeRecord(
            code=code, issuance_id=row.issuance_id, serial=row.serial, state=row.state,
            product_batch_id=self._batch(row),
            subject_id=issuance.subject_id, subject_division=issuance.subject_division,
            printer_subject_id=issuance.printer_subject_id,
        )

    def _batch(self, row: CodeRow) -> str:
        """coalesce(codes.product_batch_id, issuances.product_batch_id)"""
        if row.product_batch_id is not None:
            return row.product_batch_id
        return self._tables.issuances[row.issuance_id].product_batch_id

    def _rows_of(self, issuance_id: int) -> list[tuple[str, CodeRow]]:
        rows = [(code, row) for code, row in self._tables.codes.items()
                if row.issuance_id == issuance_id]
        rows.sort(key=lambda item: item[1].serial)
        return rows

    def list_codes(
        self, issuance_id: int, after_serial: int, limit: int, state: CodeState | None
    ) -> list[CodeRecord]:
        rows = [(code, row) for code, row in self._rows_of(issuance_id)
                if row.serial > after_serial and (state is None or row.state is state)]
        return [self._record(code, row) for code, row in rows[:limit]]

    def find_codes(self, codes: Sequence[str]) -> dict[str, CodeRecord]:
        return {code: self._record(code, self._tables.codes[code])
                for code in codes if code in self._tables.codes}

    def codes_in_state(self, issuance_id: int, states: frozenset[CodeState]) -> list[str]:
        return [code for code, row in self._rows_of(issuance_id) if row.state in states]

    @staticmethod
    def _in_range(row: CodeRow, selection: SerialRange) -> bool:
        return (row.issuance_id == selection.issuance_id
                and selection.first_serial <= row.serial <= selection.last_serial)

    def range_offenders(
        self, selection: SerialRange, sources: frozenset[CodeState], limit: int
    ) -> tuple[int, dict[str, CodeState]]:
        outside = [(code, row) for code, row in self._rows_of(selection.issuance_id)
                   if self._in_range(row, selection) and row.state not in sources]
        return len(outside), {code: row.state for code, row in outside[:limit]}

    def _selected(self, selection: Selection) -> list[str]:
        if isinstance(selection, SerialRange):
            return [code for code, row in self._tables.codes.items()
                    if self._in_range(row, selection)]
        return [code for code in dict.fromkeys(selection) if code in self._tables.codes]

    def apply(self, selection: Selection, move: Move, at: datetime) -> int:
        moved = 0
        for code in self._selected(selection):
            row = self._tables.codes[code]
            if row.state not in move.sources:
                continue
            target = move.target
            if move.bound_target is not None and self._batch(row) != "":
                target = move.bound_target
            self._tables.codes[code] = replace(
                row,
                state=target,
                product_batch_id=(row.product_batch_id if move.product_batch_id is None
                                  else move.product_batch_id),
                void_reason=row.void_reason if move.reason is None else move.reason,
                changed_at=at,
            )
            moved += 1
        return moved

    # -- production lines -------------------------------------------------------------------

    def touch_line(self, issuance_id: int, at: datetime) -> bool:
        line = self._tables.lines.get(issuance_id, LineState(None))
        if issuance_id not in self._tables.issuances or line.closed_at is not None:
            return False
        self._tables.lines[issuance_id] = replace(line, last_activity_at=at)
        return True

    def close_line(self, issuance_id: int, at: datetime) -> None:
        if issuance_id in self._tables.issuances:
            self._tables.lines[issuance_id] = LineState(last_activity_at=at, closed_at=at)

    def open_lines(self, idle_since: datetime) -> list[int]:
        return sorted(
            ident for ident, line in self._tables.lines.items()
            if self._tables.issuances[ident].mode is IssueMode.PRODUCTION_LINE
            and line.closed_at is None
            and line.last_activity_at is not None and line.last_activity_at < idle_since
        )

    # -- derivations ------------------------------------------------------------------------

    def add_derivation(
        self, issuance_id: int, parents: Sequence[str], reason: DeriveReason
    ) -> None:
        for code in parents:
            if code in self._tables.derivations:
                raise _duplicate(f"derivations parent_code {code}")
            self._tables.derivations[code] = (issuance_id, reason)

    def derivation_of(self, issuance_id: int) -> Derivation | None:
        rows = sorted((code, reason) for code, (ident, reason) in self._tables.derivations.items()
                      if ident == issuance_id)
        issuance = self._tables.issuances.get(issuance_id)
        if not rows or issuance is None:
            return None
        return Derivation(
            issuance_id=issuance_id, subject_id=issuance.subject_id, reason=rows[0][1],
            parent_codes=tuple(code for code, _ in rows),
            child_codes=tuple(code for code, _ in self._rows_of(issuance_id)),
            created_at=issuance.created_at,
        )

    def derivation_consuming(self, code: str) -> int | None:
        found = self._tables.derivations.get(code)
        return None if found is None else found[0]


class FakeRequestLog:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def find(self, request_id: str) -> RequestRecord | None:
        return self._tables.requests.get(request_id)

    def record(self, request_id: str, record: RequestRecord) -> None:
        if request_id in self._tables.requests:
            raise _duplicate(f"request_id {request_id}")
        self._tables.requests[request_id] = record


class FakeUnitOfWork(FakeUnitOfWorkBase[Tables]):
    """The service's stores over agritrace_testing's copy-on-begin unit of work. A read-only
    one (what `reader_factory` hands out) refuses to commit: reads never write."""

    codes: FakeCodeStore
    requests: FakeRequestLog

    def __init__(self, database: FakeDatabase, *, read_only: bool = False) -> None:
        self.read_only = read_only
        super().__init__(database)

    def _open(self, working: Tables) -> None:
        self.codes = FakeCodeStore(working)
        self.requests = FakeRequestLog(working)

    def commit(self) -> None:
        assert not self.read_only, "a read-only unit of work was committed"
        super().commit()


class FakeCodeReader:
    """CodeReader over the committed codes (the SQL reader uses sessions of its own), `chunk`
    at a time; remembers the chunk sizes it was asked for."""

    def __init__(self, database: FakeDatabase) -> None:
        self.database = database
        self.chunks_asked: list[int] = []

    def find(self, code: str) -> CodeRecord | None:
        return FakeCodeStore(self.database.committed).find_codes([code]).get(code)

    def serials(self, selection: SerialRange, chunk: int) -> Iterator[list[tuple[int, str]]]:
        self.chunks_asked.append(chunk)
        rows = sorted(
            (row.serial, code) for code, row in self.database.committed.codes.items()
            if row.issuance_id == selection.issuance_id
            and selection.first_serial <= row.serial <= selection.last_serial
        )
        for start in range(0, len(rows), chunk):
            yield rows[start:start + chunk]


# -- collaborators -----------------------------------------------------------------------------


class FakeSubjectDirectory:
    """SubjectDirectory over a dict; `unavailable` makes it fail as an unreachable registry."""

    def __init__(self, subjects: Sequence[SubjectInfo] = ()) -> None:
        self.subjects = {subject.subject_id: subject for subject in subjects}
        self.unavailable = False
        self.asked: list[str] = []

    def add(self, subject_id: str, division_code: str, status: str = "APPROVED") -> SubjectInfo:
        info = SubjectInfo(subject_id, division_code, status)
        self.subjects[subject_id] = info
        return info

    def get(self, subject_id: str) -> SubjectInfo | None:
        self.asked.append(subject_id)
        if self.unavailable:
            raise Unavailable(f"the registry could not be asked about subject {subject_id}")
        return self.subjects.get(subject_id)


LABELS_PER_PAGE = 40


class FakeLabels:
    """A LabelRenderer with deterministic output."""

    def __init__(self) -> None:
        self.sheets: list[list[tuple[str, str]]] = []

    def render_label(self, code: str, url: str, fmt: LabelFormat) -> bytes:
        return f"{fmt}:{code}:{url}".encode()

    def render_sheet(self, labels: Sequence[tuple[str, str]]) -> tuple[bytes, int]:
        self.sheets.append(list(labels))
        data = "\n".join(f"{code}:{url}" for code, url in labels).encode()
        return data, math.ceil(len(labels) / LABELS_PER_PAGE)

    def labels_zip(self, items: Iterator[tuple[int, str, str]]) -> Iterator[bytes]:
        for serial, code, url in items:
            yield f"{serial}:{code}:{url}".encode()


class SequentialIds:
    """Issuance ids 1001, 1002, ... (time-ordered, as the real ones)."""

    def __init__(self, start: int = 1001) -> None:
        self.next = start
        self.issued: list[int] = []

    def __call__(self) -> int:
        ident = self.next
        self.next += 1
        self.issued.append(ident)
        return ident


class CodeGenerator:
    """codes.new_codes, remembering what it was asked; `forced` answers come first (e.g. a
    list containing a code that already exists, to provoke a collision)."""

    def __init__(self, generate: Callable[[str, int], list[str]] = code_format.new_codes) -> None:
        self.generate = generate
        self.forced: list[list[str]] = []
        self.calls: list[tuple[str, int]] = []
        self.handed_out: list[list[str]] = []

    def __call__(self, province: str, count: int) -> list[str]:
        self.calls.append((province, count))
        generated = self.forced.pop(0) if self.forced else self.generate(province, count)
        self.handed_out.append(generated)
        return generated


# -- subjects and callers ------------------------------------------------------------------------

SUBJECT_A = "S-A-330106"  # a tea grower in Xihu district, Hangzhou
SUBJECT_B = "S-B-330106"  # its neighbour in the same county
PRINTER_P = "S-P-440305"  # a printing company in Shenzhen
SUSPENDED = "S-SUSPENDED"
REJECTED = "S-REJECTED"
DIVISION_A = "330106"
DIVISION_B = "330106"
DIVISION_P = "440305"


def standard_subjects() -> list[SubjectInfo]:
    return [
        SubjectInfo(SUBJECT_A, DIVISION_A, "APPROVED"),
        SubjectInfo(SUBJECT_B, DIVISION_B, "APPROVED"),
        SubjectInfo(PRINTER_P, DIVISION_P, "APPROVED"),
        SubjectInfo(SUSPENDED, "330102", "SUSPENDED"),
        SubjectInfo(REJECTED, "330102", "REJECTED"),
    ]


PROCESS = "process"  # actor=None: the process itself (sweeps, start-up)
OPERATOR_A = "operator_of_A"
OPERATOR_B = "operator_of_B"
OPERATOR_P = "operator_of_printer_P"
OPERATOR_UNBOUND = "operator_unbound"
PLATFORM_33 = "platform_33"
PLATFORM_44 = "platform_44"
REGULATOR_COUNTY = "regulator_county_330106"
REGULATOR_NEIGHBOUR_COUNTY = "regulator_county_330102"
REGULATOR_PROVINCE = "regulator_province_33"
REGULATOR_NATIONAL = "regulator_national"
OPS_ADMIN = "ops_admin"
SERVICE_ACCOUNT = "service_account"


def _principal(
    name: str, kind: PrincipalKind, jurisdiction: str = "", subject_id: str = "",
    roles: frozenset[str] = frozenset(),
) -> Principal:
    return Principal(
        account_id=f"acc-{name}", kind=kind, username=name, subject_id=subject_id,
        jurisdiction=jurisdiction, roles=roles, session_id=f"session-{name}",
        audience="agritrace",
    )


_INSPECTOR = frozenset({Role.INSPECTOR})

PRINCIPALS: dict[str, Principal | None] = {
    PROCESS: None,
    OPERATOR_A: _principal(OPERATOR_A, PrincipalKind.SUBJECT_OPERATOR, subject_id=SUBJECT_A),
    OPERATOR_B: _principal(OPERATOR_B, PrincipalKind.SUBJECT_OPERATOR, subject_id=SUBJECT_B),
    OPERATOR_P: _principal(OPERATOR_P, PrincipalKind.SUBJECT_OPERATOR, subject_id=PRINTER_P),
    OPERATOR_UNBOUND: _principal(OPERATOR_UNBOUND, PrincipalKind.SUBJECT_OPERATOR),
    PLATFORM_33: _principal(PLATFORM_33, PrincipalKind.PLATFORM_CLIENT, "33"),
    PLATFORM_44: _principal(PLATFORM_44, PrincipalKind.PLATFORM_CLIENT, "44"),
    REGULATOR_COUNTY: _principal(REGULATOR_COUNTY, PrincipalKind.REGULATOR, "330106",
                                 roles=_INSPECTOR),
    REGULATOR_NEIGHBOUR_COUNTY: _principal(REGULATOR_NEIGHBOUR_COUNTY, PrincipalKind.REGULATOR,
                                           "330102", roles=_INSPECTOR),
    REGULATOR_PROVINCE: _principal(REGULATOR_PROVINCE, PrincipalKind.REGULATOR, "33",
                                   roles=_INSPECTOR),
    REGULATOR_NATIONAL: _principal(REGULATOR_NATIONAL, PrincipalKind.REGULATOR, "",
                                   roles=_INSPECTOR),
    OPS_ADMIN: _principal(OPS_ADMIN, PrincipalKind.OPS_ADMIN),
    SERVICE_ACCOUNT: _principal(SERVICE_ACCOUNT, PrincipalKind.SERVICE),
}
