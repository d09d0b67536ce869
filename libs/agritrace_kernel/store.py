"""A service's database as its composition root needs it: the engine on its own schema or
file, sessions for writers and for readers, and the outbox relay when its events are
published. Every service's bootstrap opens one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from agritrace_kernel import db
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import Publisher
from agritrace_kernel.events.relay import OutboxRelay, unpublished_probe


@dataclass
class ServiceStore:
    service: str
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]
    relay: OutboxRelay | None = None
    # The relay's probe's own connection (see OutboxRelay), when there is a relay.
    probe_engine: Engine | None = None

    @classmethod
    def open(cls, settings: Settings, service: str, publisher: Publisher | None) -> ServiceStore:
        """With a publisher, an outbox relay publishes through it (the caller starts it);
        without one, events stay in the outbox (e.g. in a worker process)."""
        # A connection for every server thread, and a few for the relay and other
        # background threads: a smaller pool opens and closes connections under load.
        engine = db.create_engine(settings.database_for(service),
                                  pool_size=settings.grpc_max_workers + 4)
        sessions = db.session_factory(engine)
        if publisher is None:
            return cls(service, engine, sessions, db.reader_session_factory(engine))
        probe_engine = db.create_engine(settings.database_for(service), pool_size=1,
                                        pre_ping=False, autocommit=True)
        relay = OutboxRelay(service, sessions, publisher, poll_seconds=settings.outbox_poll_seconds,
                            probe=unpublished_probe(probe_engine))
        return cls(service, engine, sessions, db.reader_session_factory(engine), relay,
                   probe_engine)

    @property
    def after_commit(self) -> Callable[[], None] | None:
        """What a unit of work calls after committing events: wake the relay."""
        return self.relay.wake if self.relay is not None else None

    def ready(self) -> bool:
        return db.database_reachable(self.engine)

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        if self.probe_engine is not None:
            self.probe_engine.dispose()
        self.engine.dispose()
