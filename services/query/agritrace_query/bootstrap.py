"""The composition root of the query service: picks adapters for the mode the process runs in
and wires them into the use cases and the read model's event handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from agritrace_kernel import db
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import Publisher, Subscription
from agritrace_kernel.events.relay import OutboxRelay
from agritrace_kernel.store import ServiceStore
from agritrace_query.adapters.cache import (
    InMemoryOriginCache,
    InvalidationListener,
    NearOriginCache,
    RedisOriginCache,
    origin_cache,
)
from agritrace_query.adapters.query_log_writer import QueryLogWriter
from agritrace_query.adapters.query_unit_of_work import QueryUnitOfWork, log_units_of_work
from agritrace_query.adapters.read_store import PointOriginReader
from agritrace_query.adapters.unit_of_work import ProjectionUnitOfWork
from agritrace_query.service_layer import projections
from agritrace_query.service_layer.ports import OriginCache
from agritrace_query.service_layer.services import (
    SERVICE,
    QueryService,
)

MIGRATIONS = Path(__file__).parent / "migrations"
# A worker handles a few events at once (the kernel's nameko worker: 4); the pool's overflow
# covers more.
PROJECTION_POOL_SIZE = 4


@dataclass
class QueryApp:
    settings: Settings
    store: ServiceStore
    service: QueryService
    cache: OriginCache
    log_writer: QueryLogWriter
    scan_engine: Engine
    # The key anonymous callers' fingerprints are made with (never stored).
    fingerprint_secret: bytes
    subscriptions: list[Subscription] = field(default_factory=list)
    # The event handlers' own engine, when they have one (see bootstrap).
    projection_engine: Engine | None = None
    # Keeps the scans' near cache right; a server starts it (the worker, which makes the
    # invalidations, has no use for it).
    invalidations: InvalidationListener | None = None

    def background(self) -> tuple[QueryLogWriter | InvalidationListener, ...]:
        """What a query server runs beside its RPCs."""
        return (self.log_writer, *((self.invalidations,) if self.invalidations else ()))

    @property
    def relay(self) -> OutboxRelay | None:
        return self.store.relay

    def readiness_checks(self) -> tuple[Callable[[], bool], ...]:
        return (self.store.ready,)

    def start(self) -> None:
        """The background work besides the relay (the all-in-one platform's way; a query
        server hands `background` to the kernel's hosting instead)."""
        for task in self.background():
            task.start()

    def close(self) -> None:
        if self.invalidations is not None:
            self.invalidations.stop()
        # The log first: its queued entries need the database still open.
        self.log_writer.stop()
        self.scan_engine.dispose()
        if self.projection_engine is not None:
            self.projection_engine.dispose()
        self.store.close()


def migrate(settings: Settings) -> None:
    db.migrate(settings.database_for(SERVICE), MIGRATIONS)


def bootstrap(settings: Settings, publisher: Publisher | None = None,
              cache: OriginCache | None = None) -> QueryApp:
    """Builds the query service. `publisher`: where its outbox (counterfeit_suspected) goes;
    `cache`: the origin cache (default: Redis at AGRITRACE_REDIS_URL, else in-process)."""
    store = ServiceStore.open(settings, SERVICE, publisher)
    # Scans use their own pool without pre-ping: one round trip per point query.
    scan_engine = db.create_engine(settings.database_for(SERVICE),
                                   pool_size=settings.grpc_max_workers + 4, pre_ping=False,
                                   autocommit=True)
    if cache is None:
        cache = origin_cache(settings.redis_url)
    # Scans read through a near cache of the replica's own when the shared cache is Redis;
    # the event handlers invalidate Redis, which announces it to every replica.
    scan_cache: OriginCache = cache
    invalidations = None
    if isinstance(cache, RedisOriginCache) and settings.query_near_cache_entries:
        near = NearOriginCache(cache, InMemoryOriginCache(settings.query_near_cache_entries))
        scan_cache, invalidations = near, cache.listener(near)
    writer = QueryLogWriter(log_units_of_work(store.sessions, scan_engine))
    service = QueryService(
        origins=PointOriginReader(scan_engine), cache=scan_cache, log_sink=writer,
        reader_factory=lambda: QueryUnitOfWork(store.readers),
        uow_factory=lambda: QueryUnitOfWork(store.sessions, after_commit=store.after_commit),
        counterfeit_threshold=settings.query_counterfeit_threshold)
    # On PostgreSQL the event handlers use a pool that does not ping each connection it hands
    # out (a round trip per event): a handler that meets a dropped connection fails, the pool
    # replaces the connection and ProjectionHandler tries the event again. Connections open on
    # first use only, so a process that handles no events opens none. (SQLite, the all-in-one
    # mode, keeps one engine: one writer at a time.)
    projection_engine = (
        db.create_engine(settings.database_for(SERVICE), pool_size=PROJECTION_POOL_SIZE,
                         pre_ping=False)
        if store.engine.dialect.name == "postgresql" else None)
    projection_sessions = (db.session_factory(projection_engine)
                           if projection_engine is not None else store.sessions)
    subscriptions = projections.subscriptions(
        lambda: ProjectionUnitOfWork(projection_sessions), cache)
    return QueryApp(settings, store, service, cache, writer, scan_engine,
                    settings.pii_key_bytes(), subscriptions, projection_engine, invalidations)
