"""The unit of work of the read model's writers: the projection store and the kernel's event
store (the inbox that makes each event count once) in one transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from agritrace_kernel.db import SqlAlchemyUnitOfWork
from agritrace_query.adapters.projection_store import SqlProjectionStore


class ProjectionUnitOfWork(SqlAlchemyUnitOfWork):
    projections: SqlProjectionStore

    def _open(self, session: Session) -> None:
        self.projections = SqlProjectionStore(session)
