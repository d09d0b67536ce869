"""The unit of work of the query service's read side: the read model (`reads`) and the query
log (`log`) on one session, plus the kernel's outbox for the service's own events
(counterfeit_suspected). The read model's writers have their own ProjectionUnitOfWork."""

from __future__ import annotations

from sqlalchemy.orm import Session

from agritrace_kernel.db import SqlAlchemyUnitOfWork
from agritrace_query.adapters.query_log_store import SqlAlchemyQueryLog
from agritrace_query.adapters.read_store import SqlAlchemyReadStore


class QueryUnitOfWork(SqlAlchemyUnitOfWork):
    reads: SqlAlchemyReadStore
    log: SqlAlchemyQueryLog

    def _open(self, session: Session) -> None:
        self.reads = SqlAlchemyReadStore(session)
        self.log = SqlAlchemyQueryLog(session)
