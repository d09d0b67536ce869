"""SQLAlchemy adapters of the coding ports. A million codes are written with one PostgreSQL
COPY stream (text format, built in large blocks) and executemany on SQLite; state changes are
single set-wise UPDATEs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agritrace_coding.adapters import orm
from agritrace_coding.domain.model import (
    CodeRecord,
    CodeState,
    Derivation,
    DeriveReason,
    Issuance,
    IssueMode,
    SerialRange,
)
from agritrace_coding.service_layer.ports import DuplicateCode, Move, Selection
from agritrace_kernel.db import PointQuery, SqlAlchemyUnitOfWork, as_utc, matching
from agritrace_kernel.idempotency import SqlAlchemyRequestLog

COPY_BLOCK = 50_000  # rows per write to the COPY stream

_c = orm.codes.c
_i = orm.issuances.c
_bound_batch = sa.func.coalesce(_c.product_batch_id, _i.product_batch_id)
_RECORD_COLUMNS = (
    _c.code, _c.issuance_id, _c.serial, _c.state, _bound_batch.label("batch"),
    _i.subject_id, _i.subject_division, _i.printer_subject_id,
)
_JOINED = orm.codes.join(orm.issuances, _c.issuance_id == _i.issuance_id)


class _ScanRow(NamedTuple):
    """A row of _RECORD_COLUMNS as the scan path's driver query returns it."""

    code: str
    issuance_id: int
    serial: int
    state: str
    batch: str | None
    subject_id: str
    subject_division: str
    printer_subject_id: str


def _issuance(row: sa.RowMapping) -> Issuance:
    return Issuance(
        issuance_id=row["issuance_id"],
        subject_id=row["subject_id"],
        subject_division=row["subject_division"],
        province=row["province"],
        mode=IssueMode(row["mode"]),
        quantity=row["quantity"],
        product_batch_id=row["product_batch_id"],
        printer_subject_id=row["printer_subject_id"],
        line_id=row["line_id"],
        created_at=as_utc(row["created_at"]),
        created_by=row["created_by"],
    )


def _record(row: Any) -> CodeRecord:
    return CodeRecord(
        code=row.code, issuance_id=row.issuance_id, serial=row.serial,
        state=CodeState(row.state), product_batch_id=row.batch or "",
        subject_id=row.subject_id, subject_division=row.subject_division,
        printer_subject_id=row.printer_subject_id,
    )


def _is_unique_violation(error: BaseException) -> bool:
    sqlstate = getattr(error, "sqlstate", None) or getattr(
        getattr(error, "orig", None), "sqlstate", None)
    return sqlstate == "23505" or isinstance(error, IntegrityError)


class SqlAlchemyCodeStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    # -- issuances --------------------------------------------------------------------------

    def add_issuance(self, issuance: Issuance) -> None:
        self.session.execute(orm.issuances.insert().values(
            issuance_id=issuance.issuance_id, subject_id=issuance.subject_id,
            subject_division=issuance.subject_division, province=issuance.province,
            mode=issuance.mode.value, quantity=issuance.quantity,
            product_batch_id=issuance.product_batch_id,
            printer_subject_id=issuance.printer_subject_id, line_id=issuance.line_id,
            created_at=issuance.created_at, created_by=issuance.created_by,
            last_activity_at=issuance.created_at
            if issuance.mode is IssueMode.PRODUCTION_LINE else None,
        ))

    def set_quantity(self, issuance_id: int, quantity: int) -> None:
        self.session.execute(orm.issuances.update().where(_i.issuance_id == issuance_id)
                             .values(quantity=quantity))

    def get_issuance(self, issuance_id: int) -> Issuance | None:
        row = self.session.execute(
            sa.select(orm.issuances).where(_i.issuance_id == issuance_id)
        ).mappings().first()
        return None if row is None else _issuance(row)

    def list_issuances(
        self, subject_id: str, before: tuple[datetime, int] | None, limit: int
    ) -> list[Issuance]:
        query = sa.select(orm.issuances).where(
            sa.or_(_i.subject_id == subject_id, _i.printer_subject_id == subject_id))
        if before is not None:
            query = query.where(sa.or_(
                _i.created_at < before[0],
                sa.and_(_i.created_at == before[0], _i.issuance_id < before[1]),
            ))
        query = query.order_by(_i.created_at.desc(), _i.issuance_id.desc()).limit(limit)
        return [_issuance(row) for row in self.session.execute(query).mappings()]

    def state_counts(self, issuance_id: int) -> dict[CodeState, int]:
        rows = self.session.execute(
            sa.select(_c.state, sa.func.count()).where(_c.issuance_id == issuance_id)
            .group_by(_c.state))
        return {CodeState(state): count for state, count in rows}

    # -- codes ------------------------------------------------------------------------------

    def add_codes(
        self, issuance_id: int, first_serial: int, codes: Sequence[str], state: CodeState
    ) -> None:
        if not codes:
            return
        try:
            if self._postgres:
                self._copy_codes(issuance_id, first_serial, codes, state)
            else:
                self.session.execute(orm.codes.insert(), [
                    {"code": code, "issuance_id": issuance_id, "serial": serial,
                     "state": state.value}
                    for serial, code in enumerate(codes, start=first_serial)
                ])
        except Exception as error:
            if _is_unique_violation(error):
                raise DuplicateCode(str(error)) from error
            raise

    def _copy_codes(
        self, issuance_id: int, first_serial: int, codes: Sequence[str], state: CodeState
    ) -> None:
        connection = self.session.connection()
        driver = connection.connection.driver_connection
        assert driver is not None
        # The columns that vary are formatted here; the rest is one constant tail per row.
        tail = f"\t{issuance_id}\t"
        suffix = f"\t{state.value}\n"
        with driver.cursor() as cursor, cursor.copy(
            "COPY codes (code, issuance_id, serial, state) FROM STDIN"
        ) as copy:
            for start in range(0, len(codes), COPY_BLOCK):
                block = codes[start:start + COPY_BLOCK]
                serial = first_serial + start
                copy.write("".join(
                    f"{code}{tail}{number}{suffix}"
                    for number, code in enumerate(block, start=serial)
                ))

    def list_codes(
        self, issuance_id: int, after_serial: int, limit: int, state: CodeState | None
    ) -> list[CodeRecord]:
        query = (sa.select(*_RECORD_COLUMNS).select_from(_JOINED)
                 .where(_c.issuance_id == issuance_id, _c.serial > after_serial))
        if state is not None:
            query = query.where(_c.state == state.value)
        query = query.order_by(_c.serial).limit(limit)
        return [_record(row) for row in self.session.execute(query)]

    def find_codes(self, codes: Sequence[str]) -> dict[str, CodeRecord]:
        found: dict[str, CodeRecord] = {}
        if len(codes) == 1:
            # The scan path: a plain equality the statement cache keeps compiled.
            conditions: Any = [_c.code == codes[0]]
        else:
            conditions = matching(self.session, _c.code, list(codes))
        for condition in conditions:
            for row in self.session.execute(
                    sa.select(*_RECORD_COLUMNS).select_from(_JOINED).where(condition)):
                found[row.code] = _record(row)
        return found

    def codes_in_state(self, issuance_id: int, states: frozenset[CodeState]) -> list[str]:
        return list(self.session.scalars(
            sa.select(_c.code).where(_c.issuance_id == issuance_id,
                                     _c.state.in_([s.value for s in states]))
            .order_by(_c.serial)))

    @staticmethod
    def _in_range(selection: SerialRange) -> sa.ColumnElement[bool]:
        return sa.and_(_c.issuance_id == selection.issuance_id,
                       _c.serial.between(selection.first_serial, selection.last_serial))

    def range_offenders(
        self, selection: SerialRange, sources: frozenset[CodeState], limit: int
    ) -> tuple[int, dict[str, CodeState]]:
        outside = sa.and_(self._in_range(selection), _c.state.not_in([s.value for s in sources]))
        count = self.session.execute(sa.select(sa.func.count()).where(outside)).scalar_one()
        if not count:
            return 0, {}
        rows = self.session.execute(
            sa.select(_c.code, _c.state).where(outside).order_by(_c.serial).limit(limit))
        return count, {code: CodeState(state) for code, state in rows}

    def apply(self, selection: Selection, move: Move, at: datetime) -> int:
        values: dict[str, Any] = {"changed_at": at}
        if move.bound_target is None:
            values["state"] = move.target.value
        else:
            issuance_batch = (sa.select(_i.product_batch_id)
                              .where(_i.issuance_id == _c.issuance_id).scalar_subquery())
            bound = sa.func.coalesce(_c.product_batch_id, issuance_batch, "") != ""
            values["state"] = sa.case((bound, move.bound_target.value), else_=move.target.value)
        if move.product_batch_id is not None:
            values["product_batch_id"] = move.product_batch_id
        if move.reason is not None:
            values["void_reason"] = move.reason
        in_sources = _c.state.in_([s.value for s in move.sources])
        if isinstance(selection, SerialRange):
            conditions: Any = [self._in_range(selection)]
        else:
            conditions = matching(self.session, _c.code, list(selection))
        moved = 0
        for condition in conditions:
            result = self.session.execute(
                orm.codes.update().where(condition, in_sources).values(**values))
            moved += result.rowcount  # type: ignore[attr-defined]
        return moved

    # -- production lines -------------------------------------------------------------------

    def touch_line(self, issuance_id: int, at: datetime) -> bool:
        result = self.session.execute(
            orm.issuances.update()
            .where(_i.issuance_id == issuance_id, _i.line_closed_at.is_(None))
            .values(last_activity_at=at))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def close_line(self, issuance_id: int, at: datetime) -> None:
        self.session.execute(orm.issuances.update().where(_i.issuance_id == issuance_id)
                             .values(line_closed_at=at, last_activity_at=at))

    def open_lines(self, idle_since: datetime) -> list[int]:
        return list(self.session.scalars(sa.select(_i.issuance_id).where(
            _i.mode == IssueMode.PRODUCTION_LINE.value, _i.line_closed_at.is_(None),
            _i.last_activity_at < idle_since)))

    # -- derivations ------------------------------------------------------------------------

    def add_derivation(
        self, issuance_id: int, parents: Sequence[str], reason: DeriveReason
    ) -> None:
        self.session.execute(orm.derivations.insert(), [
            {"parent_code": code, "issuance_id": issuance_id, "reason": reason.value}
            for code in parents
        ])

    def derivation_of(self, issuance_id: int) -> Derivation | None:
        rows = self.session.execute(
            sa.select(orm.derivations.c.parent_code, orm.derivations.c.reason)
            .where(orm.derivations.c.issuance_id == issuance_id)
            .order_by(orm.derivations.c.parent_code)).all()
        issuance = self.get_issuance(issuance_id)
        if not rows or issuance is None:
            return None
        children = self.session.scalars(
            sa.select(_c.code).where(_c.issuance_id == issuance_id).order_by(_c.serial))
        return Derivation(
            issuance_id=issuance_id, subject_id=issuance.subject_id,
            reason=DeriveReason(rows[0].reason),
            parent_codes=tuple(row.parent_code for row in rows),
            child_codes=tuple(children), created_at=issuance.created_at,
        )

    def derivation_consuming(self, code: str) -> int | None:
        found: int | None = self.session.scalar(
            sa.select(orm.derivations.c.issuance_id)
            .where(orm.derivations.c.parent_code == code))
        return found


class SqlAlchemyCodeReader:
    """Reads outside units of work: long serial ranges page by page, each page its own short
    query (an export of a million codes neither holds them all nor keeps a transaction open
    for minutes), and single codes on the scan path (one indexed join, one round trip)."""

    def __init__(self, sessions: Callable[[], Session], scan_engine: sa.Engine) -> None:
        self.sessions = sessions
        self._lookup = PointQuery(scan_engine, sa.select(*_RECORD_COLUMNS).select_from(_JOINED)
                                  .where(_c.code == sa.bindparam("code")))

    def find(self, code: str) -> CodeRecord | None:
        rows = self._lookup.rows(code=code)
        return _record(_ScanRow(*rows[0])) if rows else None

    def serials(self, selection: SerialRange, chunk: int) -> Iterator[list[tuple[int, str]]]:
        after = selection.first_serial - 1
        while after < selection.last_serial:
            with self.sessions() as session:
                rows = session.execute(
                    sa.select(_c.serial, _c.code)
                    .where(_c.issuance_id == selection.issuance_id, _c.serial > after,
                           _c.serial <= selection.last_serial)
                    .order_by(_c.serial).limit(chunk)).all()
            if not rows:
                return
            yield [(row.serial, row.code) for row in rows]
            after = rows[-1].serial


class CodingUnitOfWork(SqlAlchemyUnitOfWork):
    codes: SqlAlchemyCodeStore
    requests: SqlAlchemyRequestLog

    def __init__(self, session_factory: sessionmaker[Session],
                 after_commit: Callable[[], None] | None = None) -> None:
        super().__init__(session_factory, after_commit)

    def _open(self, session: Session) -> None:
        self.codes = SqlAlchemyCodeStore(session)
        self.requests = SqlAlchemyRequestLog(session, orm.request_log)
