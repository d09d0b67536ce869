"""Database plumbing: one engine per service (its own PostgreSQL schema or SQLite file),
Alembic migrations per service, and the SQLAlchemy unit of work base."""

from __future__ import annotations

import hashlib
import logging
import select
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.adapt import Transformer
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.errors import AlreadyExists
from agritrace_kernel.events.model import Event
from agritrace_kernel.events.store import EventStore
from agritrace_kernel.telemetry import inject_context

log = logging.getLogger(__name__)


def create_engine(
    target: DatabaseTarget, *, pool_size: int = 10, pre_ping: bool = True,
    autocommit: bool = False,
) -> Engine:
    """An engine whose connections see only the service's own schema. `pre_ping` tests each
    connection on checkout (one round trip); a hot read path may skip it and retry once.
    `autocommit`: every statement its own transaction (single-statement reads; SQLite
    connections are always driven that way, see _sqlite_pragmas)."""
    if target.url.startswith("sqlite"):
        path = target.url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            target.url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
        )
        sa_event.listen(engine, "connect", _sqlite_pragmas)
        sa_event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, Any] = {}
    if target.schema:
        connect_args["options"] = f"-csearch_path={target.schema}"
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return sa.create_engine(
        target.url, connect_args=connect_args, pool_size=pool_size, pool_pre_ping=pre_ping,
        **options,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit transactions break SAVEPOINT nesting (a released savepoint
    # would commit); SQLAlchemy's documented pysqlite recipe: no driver transactions, an
    # explicit BEGIN on every SQLAlchemy transaction instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the relay read while a request writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so a
    # transaction that reads and then writes can never fail on a snapshot another writer
    # made stale. SQLite serialises writers anyway; this is the embedded mode's trade-off.
    # AUTOCOMMIT connections (single-statement reads) take no lock: WAL lets them read
    # beside a writer.
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def ensure_schema(engine: Engine, schema: str | None) -> None:
    if schema and engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


def migrate(target: DatabaseTarget, migrations_dir: Path, revision: str = "head") -> None:
    """Applies a service's Alembic migrations (its own version table, in its own schema)."""
    engine = create_engine(target, pool_size=1)
    try:
        ensure_schema(engine, target.schema)
        config = AlembicConfig()
        config.set_main_option("script_location", str(migrations_dir))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["schema"] = target.schema
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    log.info("migrations applied", extra={"migrations": str(migrations_dir)})


def database_reachable(engine: Engine) -> bool:
    """Health probe: can we run a trivial query right now?"""
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False


class SqlAlchemyUnitOfWork:
    """One business transaction: the state change and the events announcing it commit together
    (the outbox). Subclasses add their repositories in `_open`.

    Use as `with uow: ...; uow.commit()`; leaving the block without commit rolls back.
    """

    session: Session

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._after_commit = after_commit
        self._pending_events: list[Event] = []

    def __enter__(self) -> Self:
        self.session = self._session_factory()
        self._pending_events = []
        self.events = EventStore(self.session)
        self._open(self.session)
        return self

    def _open(self, session: Session) -> None:
        """Hook: build repositories on the session."""

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        try:
            self.rollback()
        finally:
            self.session.close()
        if isinstance(exc, IntegrityError):
            # Two concurrent requests raced for one unique key: the loser sees what a
            # sequential retry would have seen, not an internal error.
            raise AlreadyExists(
                "a concurrent request created the same record; read it or retry",
                reason="CONCURRENT_DUPLICATE",
            ) from exc

    def publish(self, event: Event) -> None:
        """Queues an event; it is written to the outbox in the same transaction on commit."""
        self._pending_events.append(event)

    def commit(self) -> None:
        wrote_events = bool(self._pending_events)
        trace_context = inject_context()
        events = [pending if pending.trace_context
                  else replace(pending, trace_context=trace_context)
                  for pending in self._pending_events]
        if len(events) == 1:
            self.events.append_outbox(events[0])
        else:
            self.events.append_outbox_many(events)
        self._pending_events = []
        try:
            self.session.commit()
        except IntegrityError as error:
            raise AlreadyExists(
                "a concurrent request created the same record; read it or retry",
                reason="CONCURRENT_DUPLICATE",
            ) from error
        if wrote_events and self._after_commit is not None:
            self._after_commit()

    def rollback(self) -> None:
        self._pending_events = []
        self.session.rollback()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def reader_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read-only use cases. On PostgreSQL they run in autocommit: each query is
    its own snapshot, and no BEGIN/ROLLBACK round trips wrap a look-up. SQLite keeps the
    normal transactions (its write lock makes them cheap and consistent)."""
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return session_factory(engine)


@contextmanager
def transaction(factory: Callable[[], Session]) -> Iterator[Session]:
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# -- bulk statements that work on both PostgreSQL and SQLite ---------------------------------

IN_CHUNK = 900  # stays under SQLite's bound-parameter limit


def as_utc(value: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands them back naive)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def matching(
    session: Session, column: sa.ColumnElement[str], values: Sequence[str]
) -> Iterable[sa.ColumnElement[bool]]:
    """Conditions `column IN values`, in as few statements as the database allows: one
    `= ANY(array)` on PostgreSQL (one bound parameter, nothing to compile per value), chunks
    of IN lists on SQLite."""
    if not values:
        return
    if session.get_bind().dialect.name == "postgresql":
        yield column == sa.any_(sa.literal(list(values), type_=postgresql.ARRAY(sa.String())))
    else:
        for chunk in chunks(values):
            yield column.in_(chunk)


class KeyedSelect:
    """A constant SELECT of the rows whose `column` is one of many keys, run again and again
    in sessions' transactions (a trace asks one per edge kind and level), rows as plain
    tuples. On PostgreSQL: `= ANY` of one array parameter, compiled once and run on the
    session's own DBAPI connection - SQLAlchemy's statement building, cache key, result and
    Row objects cost a large trace a tenth of its CPU. Elsewhere through the session, IN
    lists in chunks (see matching)."""

    def __init__(self, statement: sa.Select[Any], column: sa.ColumnElement[Any]) -> None:
        self.statement = statement
        self.column = column
        self._postgresql: tuple[str, dict[str, Any]] | None = None  # SQL, its own parameters

    def rows(self, session: Session, keys: Iterable[Any]) -> list[tuple[Any, ...]]:
        values = sorted(set(keys))
        if not values:
            return []
        connection = session.connection()
        if connection.dialect.name != "postgresql":
            return [tuple(row) for condition in matching(session, self.column, values)
                    for row in session.execute(self.statement.where(condition))]
        if self._postgresql is None:
            keys_parameter = sa.bindparam("keys", type_=postgresql.ARRAY(self.column.type))
            compiled = self.statement.where(self.column == sa.any_(keys_parameter)).compile(
                dialect=connection.dialect)
            self._postgresql = str(compiled), dict(compiled.params)
        sql, parameters = self._postgresql
        driver = connection.connection.driver_connection
        assert driver is not None  # the session's connection is checked out
        cursor: Any = driver.cursor()
        try:
            cursor.execute(sql, parameters | {"keys": values})
            found: list[tuple[Any, ...]] = cursor.fetchall()
        finally:
            cursor.close()
        return found


def bulk_insert(session: Session, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Inserts many rows in the session's transaction: COPY on PostgreSQL, else executemany."""
    if rows:
        columns = list(rows[0].keys())
        bulk_insert_values(session, table, columns,
                           [[row[column] for column in columns] for row in rows])


def bulk_insert_values(session: Session, table: sa.Table, columns: Sequence[str],
                       rows: Sequence[Sequence[Any]]) -> None:
    """bulk_insert of rows given as values in the order of `columns` (no dict per row, for
    the hottest paths)."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        try:
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except connection.dialect.loaded_dbapi.IntegrityError as error:
            # What the unit of work reports for an INSERT's IntegrityError (COPY goes to the
            # driver directly, past SQLAlchemy's wrapping).
            raise AlreadyExists(
                "a concurrent request created the same record; read it or retry",
                reason="CONCURRENT_DUPLICATE",
            ) from error
    else:
        connection.execute(table.insert(), [dict(zip(columns, row, strict=True))
                                            for row in rows])


class PointQuery:
    """One constant SELECT run many times on a hot path (e.g. every scan of a trace code):
    compiled once for the engine's dialect and run on a pooled DBAPI connection, so a call
    costs one round trip and no ORM session, statement compilation or result wrapping. On
    psycopg it is a server-side prepared statement run by one blocking libpq call (see
    _LibpqStatement) on a connection the engine's point queries keep (_HeldConnections).
    The engine should be dedicated, without pre-ping and in autocommit (create_engine(...,
    pre_ping=False, autocommit=True)); a connection found dead is replaced and the query
    retried once."""

    def __init__(self, engine: Engine, statement: sa.Select[Any]) -> None:
        self.engine = engine
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.positional = compiled.positiontup is not None
        self.names = list(compiled.positiontup or compiled.params)
        self.errors: tuple[type[BaseException], ...] = (engine.dialect.loaded_dbapi.Error,)
        self._libpq = (_LibpqStatement(engine, statement)
                       if engine.dialect.driver == "psycopg" else None)

    def rows(self, **params: Any) -> list[tuple[Any, ...]]:
        if self._libpq is not None:
            return self._libpq_rows(params)
        arguments: Any = (tuple(params[name] for name in self.names) if self.positional
                          else {name: params[name] for name in self.names})
        for attempt in (1, 2):
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute(self.sql, arguments)
                found = [tuple(row) for row in cursor.fetchall()]
                cursor.close()
                return found
            except self.errors:
                if attempt == 2 or not _is_dead(connection):
                    raise
                connection.invalidate()
            finally:
                connection.close()
        raise AssertionError("unreachable")

    def _libpq_rows(self, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        assert self._libpq is not None
        held = _held_connections(self.engine)
        for attempt in (1, 2):
            connection = held.take()
            try:
                found = self._libpq.rows(connection, params)
            except self.errors:
                if not _is_dead(connection):
                    held.give(connection)  # the query failed, not the connection
                    raise
                _discard(connection)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                _discard(connection)  # interrupted mid-query: its state is unknown
                raise
            held.give(connection)
            return found
        raise AssertionError("unreachable")


class _HeldConnections:
    """Pooled connections that point queries keep checked out between queries, the idle
    ones on a stack (list.append and pop are atomic): a query then skips the pool's checkout
    and check-in, a quarter of a first scan's Python. As many are held as queries ever ran
    at once on the engine; its dispose() closes the idle ones."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._idle: list[Any] = []
        sa_event.listen(engine, "engine_disposed", self._close_idle)

    def take(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            return self._engine.raw_connection()

    def give(self, connection: Any) -> None:
        self._idle.append(connection)

    def _close_idle(self, _engine: Engine) -> None:
        while self._idle:
            self._idle.pop().invalidate()  # closes the DBAPI connection now


_HELD_CONNECTIONS: weakref.WeakKeyDictionary[Engine, _HeldConnections] = (
    weakref.WeakKeyDictionary())
_HELD_LOCK = threading.Lock()


def _held_connections(engine: Engine) -> _HeldConnections:
    found = _HELD_CONNECTIONS.get(engine)
    if found is None:
        with _HELD_LOCK:
            found = _HELD_CONNECTIONS.get(engine)
            if found is None:
                found = _HELD_CONNECTIONS[engine] = _HeldConnections(engine)
    return found


class _LibpqStatement:
    """A PointQuery on psycopg: prepared once per connection, then run with one blocking
    libpq call (PQexecPrepared, which releases the GIL once) and its text results loaded by
    the connection's own psycopg loaders. A psycopg cursor runs a query as non-blocking
    steps, each wait releasing and retaking the GIL: on a busy threaded server that cost
    ~100 µs more CPU per query (measured: first scans of trace codes at 16 concurrent
    callers, 1,750-2,340 -> 2,330-2,930 scans/s)."""

    def __init__(self, engine: Engine, statement: sa.Select[Any]) -> None:
        dialect_class: Any = type(engine.dialect)
        dialect = dialect_class(paramstyle="numeric_dollar")  # $1, $2, ...
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled).encode()
        self.names = list(compiled.positiontup or ())
        self.name = f"agritrace_point_{hashlib.sha256(self.sql).hexdigest()[:24]}".encode()

    def rows(self, connection: Any, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Parameters go as text (their str()); PostgreSQL reads them as the types the
        prepared statement's comparisons ask for."""
        session = _libpq_session(connection)
        if self.name not in session.prepared:
            session.checked(session.pgconn.prepare(self.name, self.sql), _COMMAND_OK)
            session.prepared.add(self.name)
        return session.loaded(session.checked(session.pgconn.exec_prepared(
            self.name, [_as_text(params[name]) for name in self.names]), _TUPLES_OK))


_COMMAND_OK, _TUPLES_OK, _COPY_IN = (
    pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COPY_IN)


def _as_text(value: Any) -> bytes | None:
    return None if value is None else str(value).encode()


class _LibpqSession:
    """What libpq calls need of one pooled psycopg connection, looked up once per connection
    (kept in the pool's per-connection dict, which a new connection starts empty)."""

    def __init__(self, connection: Any) -> None:
        driver = connection.driver_connection
        self.pgconn = driver.pgconn
        self.encoding = driver.info.encoding
        self.loader = Transformer(driver)  # the connection's own loaders
        self.prepared: set[bytes] = set()  # statements this server session has prepared

    def checked(self, result: Any, expected: Any) -> Any:
        """`result` if its status is `expected`, else raises the psycopg error it reports."""
        if result.status != expected:
            raise pg_errors.error_from_result(result, encoding=self.encoding)
        return result

    def loaded(self, result: Any) -> list[tuple[Any, ...]]:
        """A result's rows as tuples."""
        self.loader.set_pgresult(result)
        rows: list[tuple[Any, ...]] = self.loader.load_rows(0, result.ntuples, tuple)
        return rows


def _libpq_session(connection: Any) -> _LibpqSession:
    found: _LibpqSession | None = connection.info.get("agritrace_libpq")
    if found is None:
        found = connection.info["agritrace_libpq"] = _LibpqSession(connection)
    return found


# COPY's text format: a backslash and the row and column separators are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_line(values: Sequence[object]) -> str:
    """One row of COPY's text format: each value as its str() (for numbers, text and aware
    datetimes that is a form PostgreSQL reads), no NULLs. Values are escaped one by one only
    when the row holds a character to escape (seldom: escaping each costs more than the
    rest of the row)."""
    texts = list(map(str, values))
    line = "\t".join(texts)
    if ("\\" in line or "\n" in line or "\r" in line
            or line.count("\t") != len(texts) - 1):
        line = "\t".join(text.translate(_COPY_ESCAPES) for text in texts)
    return line + "\n"


class LibpqTransaction:
    """A transaction on one pooled psycopg connection driven by libpq's blocking calls, each
    releasing the GIL once, for a background writer in a threaded server (see
    _LibpqStatement for what psycopg's cursors cost there). The engine must be in
    autocommit: this class sends BEGIN and COMMIT itself; leaving without commit() rolls
    back, and a connection found dead is discarded from the pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Any = None
        self._done = False

    def __enter__(self) -> Self:
        self._connection = self.engine.raw_connection()
        self._done = False
        try:
            self._run(b"BEGIN")
        except BaseException as error:
            self.__exit__(type(error), error, None)
            raise
        return self

    def rows(self, sql: bytes, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query's rows ($1, $2, ... for `params`, sent as text)."""
        session = _libpq_session(self._connection)
        return session.loaded(session.checked(session.pgconn.exec_params(
            sql, [_as_text(value) for value in params]), _TUPLES_OK))

    def copy(self, statement: bytes, lines: Iterable[str]) -> None:
        """COPY ... FROM STDIN of `lines` in the text format (see copy_line)."""
        session = _libpq_session(self._connection)
        pgconn = session.pgconn
        session.checked(pgconn.exec_(statement), _COPY_IN)
        if pgconn.put_copy_data("".join(lines).encode()) != 1 or pgconn.put_copy_end() != 1:
            raise pg_errors.OperationalError(pgconn.get_error_message().decode(
                errors="replace"))
        session.checked(_next_result(pgconn), _COMMAND_OK)
        while _next_result(pgconn) is not None:  # the end of the COPY's results
            pass

    def commit(self) -> None:
        self._run(b"COMMIT")
        self._done = True

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        connection, self._connection = self._connection, None
        try:
            if not self._done and not _is_dead(connection):
                self._run_on(connection, b"ROLLBACK")
        except self.engine.dialect.loaded_dbapi.Error:
            pass  # the connection is discarded below
        finally:
            if _is_dead(connection) or (not self._done and _in_transaction(connection)):
                connection.invalidate()
            connection.close()

    def _run(self, sql: bytes) -> None:
        self._run_on(self._connection, sql)

    @staticmethod
    def _run_on(connection: Any, sql: bytes) -> None:
        session = _libpq_session(connection)
        session.checked(session.pgconn.exec_(sql), _COMMAND_OK)


def _next_result(pgconn: Any) -> Any:
    """PQgetResult once it would not block: psycopg's get_result holds the GIL while it
    waits, select() does not."""
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return pgconn.get_result()
        select.select([pgconn.socket], [], [])


def _in_transaction(connection: Any) -> bool:
    return bool(connection.driver_connection.pgconn.transaction_status
                != pq.TransactionStatus.IDLE)


def _discard(connection: Any) -> None:
    """Closes a pooled connection for good (the pool opens another when it needs one)."""
    connection.invalidate()
    connection.close()


def _is_dead(connection: Any) -> bool:
    """Whether a pooled DBAPI connection lost its server (psycopg: `closed`/`broken`)."""
    raw = getattr(connection, "driver_connection", connection)
    return bool(getattr(raw, "closed", False) or getattr(raw, "broken", False))
