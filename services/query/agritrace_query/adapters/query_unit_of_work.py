"""The unit of work of the query service's read side: the read model (`reads`) and the query
log (`log`) on one session, plus the kernel's outbox for the service's own events
(counterfeit_suspected). The read model's writers have their own ProjectionUnitOfWork."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from agritrace_kernel.db import SqlAlchemyUnitOfWork
from agritrace_query.adapters.query_log_store import LibpqLogUnitOfWork, SqlAlchemyQueryLog
from agritrace_query.adapters.read_store import SqlAlchemyReadStore


class QueryUnitOfWork(SqlAlchemyUnitOfWork):
    reads: SqlAlchemyReadStore
    log: SqlAlchemyQueryLog

    def _open(self, session: Session) -> None:
        self.reads = SqlAlchemyReadStore(session)
        self.log = SqlAlchemyQueryLog(session)


def log_units_of_work(sessions: sessionmaker[Session], autocommit_engine: Engine
                      ) -> Callable[[], QueryUnitOfWork | LibpqLogUnitOfWork]:
    """The query log writer's units of work: on psycopg straight through libpq on the
    autocommit engine (see LibpqQueryLog), else (SQLite) a session."""
    if autocommit_engine.dialect.driver == "psycopg":
        return lambda: LibpqLogUnitOfWork(autocommit_engine)
    return lambda: QueryUnitOfWork(sessions)
