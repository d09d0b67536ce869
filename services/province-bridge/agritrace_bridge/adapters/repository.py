"""SQLAlchemy adapters of the bridge's unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agritrace_bridge.adapters import orm
from agritrace_bridge.domain.imports import Counts, ImportRun, Outcome, RecordOutcome, RunState
from agritrace_kernel.db import SqlAlchemyUnitOfWork, as_utc, bulk_insert, matching

_r = orm.import_runs.c
_o = orm.import_outcomes.c


def _run_row(run: ImportRun) -> dict[str, Any]:
    return {"import_id": run.import_id, "province": run.province,
            "request_id": run.request_id, "state": run.state.value,
            "page_token": run.page_token, "pages": run.pages, "total_size": run.total_size,
            "created": run.counts.created, "merged": run.counts.merged,
            "conflict": run.counts.conflict, "rejected": run.counts.rejected,
            "attempts": run.attempts, "last_error": run.last_error[:1000],
            "started_at": run.started_at, "updated_at": run.updated_at,
            "finished_at": run.finished_at}


def _run(row: sa.RowMapping) -> ImportRun:
    return ImportRun(
        import_id=row["import_id"], province=row["province"], request_id=row["request_id"],
        state=RunState(row["state"]), started_at=as_utc(row["started_at"]),
        updated_at=as_utc(row["updated_at"]), page_token=row["page_token"],
        pages=row["pages"], total_size=row["total_size"],
        counts=Counts(row["created"], row["merged"], row["conflict"], row["rejected"]),
        finished_at=as_utc(row["finished_at"]) if row["finished_at"] else None,
        last_error=row["last_error"], attempts=row["attempts"])


class SqlAlchemyImports:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _one(self, query: sa.Select[Any]) -> ImportRun | None:
        row = self.session.execute(query).mappings().first()
        return _run(row) if row is not None else None

    def get(self, import_id: str) -> ImportRun | None:
        return self._one(sa.select(orm.import_runs).where(_r.import_id == import_id))

    def by_request(self, request_id: str) -> ImportRun | None:
        return self._one(sa.select(orm.import_runs).where(_r.request_id == request_id))

    def latest(self) -> ImportRun | None:
        return self._one(sa.select(orm.import_runs)
                         .order_by(_r.started_at.desc(), _r.import_id.desc()).limit(1))

    def add(self, run: ImportRun) -> None:
        self.session.execute(sa.insert(orm.import_runs).values(_run_row(run)))

    def save(self, run: ImportRun) -> None:
        self.session.execute(sa.update(orm.import_runs)
                             .where(_r.import_id == run.import_id).values(_run_row(run)))

    def known(self, import_id: str, source_record_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for condition in matching(self.session, _o.source_record_id, source_record_ids):
            found.update(self.session.execute(sa.select(_o.source_record_id).where(
                _o.import_id == import_id, condition)).scalars())
        return found

    def add_outcomes(self, import_id: str, outcomes: Sequence[RecordOutcome]) -> None:
        bulk_insert(self.session, orm.import_outcomes, [
            {"import_id": import_id, "source_record_id": o.source_record_id,
             "outcome": o.outcome.value, "subject_id": o.subject_id, "field": o.field[:200],
             "reason": o.reason[:1000]} for o in outcomes])

    def outcomes(self, import_id: str, after: str, limit: int,
                 only: Outcome | None = None) -> list[RecordOutcome]:
        query = (sa.select(orm.import_outcomes)
                 .where(_o.import_id == import_id, _o.source_record_id > after)
                 .order_by(_o.source_record_id).limit(limit))
        if only is not None:
            query = query.where(_o.outcome == only.value)
        return [RecordOutcome(row["source_record_id"], Outcome(row["outcome"]),
                              row["subject_id"], row["field"], row["reason"])
                for row in self.session.execute(query).mappings()]


class SqlAlchemyBridgeUnitOfWork(SqlAlchemyUnitOfWork):
    imports: SqlAlchemyImports

    def _open(self, session: Session) -> None:
        self.imports = SqlAlchemyImports(session)
